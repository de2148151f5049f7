"""`sources`: where data comes from, batch (files, warehouses) or stream (Kafka, push)."""


from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .data_versions import DataVersion
from .streams import KafkaAuth, KafkaIngest
from .types import VALUE_TYPES, FieldName, Name, Seconds, SourcePath, Spec
from .upstream import ProducedBy

ValueType = Literal[VALUE_TYPES]  # type: ignore[valid-type]


class Column(Spec):
    """A column of a source, with the checks the data-validation step applies."""

    name: FieldName
    """Column name, as in the data."""
    type: ValueType
    """Value type of the column."""
    nullable: bool = True
    """Whether the column may hold nulls; `false` fails the data check on one."""
    min: float | None = None
    """Smallest value allowed; the data check fails below it."""
    max: float | None = None
    """Largest value allowed; the data check fails above it."""
    allowed: list[str | int] | None = Field(None, description="Allowed values, if a closed set.")
    description: str | None = None
    """What the column holds."""


class DataChecks(Spec):
    min_rows: int | None = Field(None, ge=0)
    """Fail training when the source has fewer rows than this."""
    max_staleness: Seconds | None = Field(None, description="The newest timestamp must be at "
                                           "most this old when training starts.")


class _Source(Spec):
    timestamp_field: FieldName = Field("event_timestamp", description="Event time column.")
    created_timestamp_field: FieldName | None = None
    """Column with the time a row was written; breaks ties between rows of the same event time."""
    columns: list[Column] = Field(default_factory=list)
    """The columns mlc checks before training (types, nulls, ranges, values)."""
    checks: DataChecks = Field(default_factory=DataChecks)
    """Checks on the whole source before training: row count, staleness."""
    description: str | None = None
    """What the source holds."""
    owner: str | None = None
    """Who to ask about the data."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Free-form tags, passed to the Feast data source."""
    produced_by: ProducedBy | None = None
    """The dbt model or Airflow task that writes this data (lineage; optionally waited on)."""


def _table_or_query(source: _Source) -> None:
    if (source.table is None) == (source.query is None):
        raise PydanticCustomError("mlc_one_of", "set exactly one of `table` and `query`", {})


class FileSource(_Source):
    type: Literal["file"]
    """A Parquet or CSV file (or folder), local or in an object store."""
    path: SourcePath = Field(min_length=1, description="Local path (relative to ml.yaml) or an "
                      "object-store URI (s3://, gs://, az://).")
    format: Literal["parquet", "csv"] = "parquet"
    """File format."""
    endpoint_override: str | None = Field(None, description="S3-compatible endpoint URL.")
    version: DataVersion | None = None
    """Pin the data to a version (DVC, lakeFS, an object version id); docs/data-versions.md."""


class BigQuerySource(_Source):
    type: Literal["bigquery"]
    """A BigQuery table or query."""
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]+$",
                              examples=["my-project.sales.transactions"])
    """Table as `project.dataset.table`; or set `query`."""
    query: str | None = None
    """A SQL query instead of a table."""

    @model_validator(mode="after")
    def _one(self):
        _table_or_query(self)
        return self


class SnowflakeSource(_Source):
    type: Literal["snowflake"]
    """A Snowflake table or query."""
    database: str = Field(pattern=r"^[A-Za-z0-9_$]+$", examples=["ANALYTICS"])
    """Snowflake database."""
    db_schema: str = Field("PUBLIC", alias="schema", title="Schema",
                           pattern=r"^[A-Za-z0-9_$]+$", examples=["PUBLIC"])
    """Snowflake schema of the table."""
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_$.]+$", examples=["transactions"])
    """Table name; or set `query`."""
    query: str | None = None
    """A SQL query instead of a table."""

    @model_validator(mode="after")
    def _one(self):
        _table_or_query(self)
        return self


class RedshiftSource(_Source):
    type: Literal["redshift"]
    """A Redshift table or query."""
    database: str = Field(pattern=r"^[A-Za-z0-9_$]+$", examples=["ANALYTICS"])
    """Redshift database."""
    db_schema: str = Field("public", alias="schema", title="Schema",
                           pattern=r"^[A-Za-z0-9_$]+$", examples=["PUBLIC"])
    """Redshift schema of the table."""
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_$.]+$", examples=["transactions"])
    """Table name; or set `query`."""
    query: str | None = None
    """A SQL query instead of a table."""

    @model_validator(mode="after")
    def _one(self):
        _table_or_query(self)
        return self


class PostgresSource(_Source):
    type: Literal["postgres"]
    """A PostgreSQL table or query."""
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_$.]+$", examples=["transactions"])
    """Table name (`schema.table` allowed); or set `query`."""
    query: str | None = None
    """A SQL query instead of a table."""

    @model_validator(mode="after")
    def _one(self):
        _table_or_query(self)
        return self


class SparkSource(_Source):
    type: Literal["spark"]
    """A Spark table or files read by Spark."""
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_.]+$", examples=["sales.transactions"])
    """A table in Spark's catalog; or set `path`."""
    path: SourcePath | None = None
    """Files Spark reads, instead of a table."""
    file_format: Literal["parquet", "csv", "json", "avro", "delta"] = "parquet"
    """Format of the files at `path`."""

    @model_validator(mode="after")
    def _one(self):
        if (self.table is None) == (self.path is None):
            raise PydanticCustomError("mlc_one_of", "set exactly one of `table` and `path`", {})
        return self


class KafkaSource(_Source):
    type: Literal["kafka"]
    """A Kafka topic, for stream features."""
    bootstrap_servers: str = Field(min_length=1)
    """Kafka brokers, `host:port[,host:port...]`."""
    topic: str = Field(pattern=r"^[A-Za-z0-9._-]+$", examples=["transactions"])
    """Topic to read."""
    format: Literal["json", "avro", "protobuf"] = "json"
    """Message format."""
    batch_source: Name = Field(description="Batch source holding the same data, for training.")
    watermark_delay: Seconds = "5m"
    """How late an event may arrive and still be counted."""
    auth: KafkaAuth = Field(default_factory=KafkaAuth)
    """How the consumers authenticate: SASL and/or TLS, secrets by reference."""
    ingest: KafkaIngest = Field(default_factory=KafkaIngest)
    """The Deployment that writes the topic's messages to the online store."""


class PushSource(_Source):
    type: Literal["push"]
    """Events pushed to the feature server, for online features."""
    batch_source: Name = Field(description="Batch source holding the same data, for training.")


Source = Annotated[
    FileSource | BigQuerySource | SnowflakeSource | RedshiftSource | PostgresSource | SparkSource
    | KafkaSource | PushSource,
    Field(discriminator="type"),
]

STREAM_SOURCE_TYPES = ("kafka", "push")
