"""`models.<name>.training.triggers`: retrain on an event, through the same cooldown and cap as
drift retraining (docs/triggers.md).

Each trigger is exactly one of `object` (a new object in a MinIO bucket), `topic` (a message
on a Kafka source's topic) or `pipeline` (another mlc pipeline succeeded).
"""


from typing import Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .types import Name, Seconds, Spec

# S3 bucket names (and MinIO's): lowercase, digits, dots and dashes.
_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# A key prefix or suffix: printable, no whitespace and no template braces.
_KEY_PART = r"^[^\s{}]{0,200}$"


class ObjectTrigger(Spec):
    """A new object in a bucket (its `s3:ObjectCreated:*` notification)."""

    store: Literal["minio", "s3", "gcs"] = "minio"
    """The object store. Argo Events listens with MinIO's own notification API; AWS S3 and
    GCS are refused (publish their notifications to a topic and use a `topic` trigger)."""
    endpoint: str = Field(pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
                          examples=["minio.storage.svc:9000"])
    """The store's API, `host[:port]`."""
    bucket: str = Field(pattern=_BUCKET, examples=["fraud-landing"])
    """The bucket watched."""
    prefix: str = Field("", pattern=_KEY_PART, examples=["transactions/"])
    """Only keys that start with this."""
    suffix: str = Field("", pattern=_KEY_PART, examples=[".parquet"])
    """Only keys that end with this."""
    access_key_secret: Name
    """Secret (under `secrets:`) holding the access key."""
    secret_key_secret: Name
    """Secret (under `secrets:`) holding the secret key."""
    insecure: bool = False
    """Plain HTTP to the store; allowed in development environments only."""


class TopicFilter(Spec):
    """Only messages whose JSON `field` has one of `values`."""

    field: str = Field(min_length=1, max_length=200, examples=["type", "meta.kind"])
    """A field of the message's JSON body; dots go into nested objects."""
    values: list[str] = Field(min_length=1, max_length=50)
    """The values that trigger, compared as exact strings."""


class TopicTrigger(Spec):
    """A message on a Kafka source's topic."""

    source: Name
    """A `type: kafka` source: its brokers, topic and `auth` are used."""
    filter: TopicFilter | None = None
    """Only some messages trigger; without it, every message does."""


class PipelineTrigger(Spec):
    """Another mlc pipeline of this project succeeded."""

    name: Name = Field(examples=["materialize-features", "train-fraud-classifier"])
    """The pipeline (its WorkflowTemplate's name, as `mlc plan` lists them)."""


class Trigger(Spec):
    """Exactly one of `object`, `topic`, `pipeline`; then the cooldown and the cap."""

    object: ObjectTrigger | None = None
    """A new object in a bucket."""
    topic: TopicTrigger | None = None
    """A message on a topic."""
    pipeline: PipelineTrigger | None = None
    """Another pipeline succeeded."""
    cooldown: Seconds = Field("24h", description="Least time between two runs it starts.")
    max_runs: PositiveInt = Field(3, le=100, description="At most this many runs ...")
    per: Seconds = Field("7d", description="... in this period.")

    @model_validator(mode="after")
    def _one(self):
        if sum(x is not None for x in (self.object, self.topic, self.pipeline)) != 1:
            raise PydanticCustomError("mlc_one_of", "a trigger is exactly one of `object`, "
                                      "`topic`, `pipeline`", {})
        return self
