"""`platform.lineage`: where every pipeline step sends its OpenLineage run events."""


from typing import Annotated, Literal

from pydantic import Field

from .types import Name, Spec


class _Lineage(Spec):
    namespace: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/-]+$",
        examples=["mlc.fraud-detection"],
        description="The OpenLineage namespace of mlc's jobs; defaults to `mlc.<project>`.")


class HttpLineage(_Lineage):
    transport: Literal["http"]
    """Marquez, OpenMetadata or any OpenLineage HTTP endpoint."""
    url: str = Field(pattern=r"^https?://[^\s{}$]+$",
                     examples=["http://marquez.lineage.svc:5000"])
    """The server's base URL."""
    endpoint: str = Field("api/v1/lineage", pattern=r"^[A-Za-z0-9._/-]+$",
                          examples=["api/v1/lineage", "api/v1/openlineage/lineage"])
    """The path events are posted to (Marquez: `api/v1/lineage`; OpenMetadata:
    `api/v1/openlineage/lineage`)."""
    api_key_secret: Name | None = None
    """Secret (under `secrets`) with the bearer token, if the server wants one."""


class FileLineage(_Lineage):
    transport: Literal["file"]
    """One JSON event per line, appended to a file (a volume, or `mlc run`'s folder)."""
    path: str = Field(min_length=1, pattern=r"^[^\s{}$]+$", examples=["lineage/events.jsonl"])
    """The file; a relative path lies in the run folder."""


class KafkaLineage(_Lineage):
    transport: Literal["kafka"]
    """A Kafka topic (needs `confluent-kafka` in the image)."""
    bootstrap_servers: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.:,_-]+$",
                                   examples=["kafka.kafka.svc:9092"])
    """Kafka brokers, `host:port[,host:port...]`."""
    topic: str = Field(pattern=r"^[A-Za-z0-9._-]+$", examples=["openlineage.events"])
    """Topic the events are written to."""


Lineage = Annotated[HttpLineage | FileLineage | KafkaLineage, Field(discriminator="transport")]
