"""`sources`: where data comes from, batch (files, warehouses) or stream (Kafka, push)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .types import VALUE_TYPES, FieldName, Name, Seconds, SourcePath, Spec

ValueType = Literal[VALUE_TYPES]  # type: ignore[valid-type]


class Column(Spec):
    """A column of a source, with the checks the data-validation step applies."""

    name: FieldName
    type: ValueType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[str | int] | None = Field(None, description="Allowed values, if a closed set.")
    description: str | None = None


class DataChecks(Spec):
    min_rows: int | None = Field(None, ge=0)
    max_staleness: Seconds | None = Field(None, description="The newest timestamp must be at "
                                           "most this old when training starts.")


class _Source(Spec):
    timestamp_field: FieldName = Field("event_timestamp", description="Event time column.")
    created_timestamp_field: FieldName | None = None
    columns: list[Column] = Field(default_factory=list)
    checks: DataChecks = Field(default_factory=DataChecks)
    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


def _table_or_query(source: _Source) -> None:
    if (source.table is None) == (source.query is None):
        raise PydanticCustomError("mlc_one_of", "set exactly one of `table` and `query`", {})


class FileSource(_Source):
    type: Literal["file"]
    path: SourcePath = Field(min_length=1, description="Local path (relative to ml.yaml) or an "
                      "object-store URI (s3://, gs://, az://).")
    format: Literal["parquet", "csv"] = "parquet"
    endpoint_override: str | None = Field(None, description="S3-compatible endpoint URL.")


class BigQuerySource(_Source):
    type: Literal["bigquery"]
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]+$")
    query: str | None = None

    @model_validator(mode="after")
    def _one(self):
        _table_or_query(self)
        return self


class SnowflakeSource(_Source):
    type: Literal["snowflake"]
    database: str = Field(pattern=r"^[A-Za-z0-9_$]+$")
    db_schema: str = Field("PUBLIC", alias="schema", pattern=r"^[A-Za-z0-9_$]+$")
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_$.]+$")
    query: str | None = None

    @model_validator(mode="after")
    def _one(self):
        _table_or_query(self)
        return self


class RedshiftSource(_Source):
    type: Literal["redshift"]
    database: str = Field(pattern=r"^[A-Za-z0-9_$]+$")
    db_schema: str = Field("public", alias="schema", pattern=r"^[A-Za-z0-9_$]+$")
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_$.]+$")
    query: str | None = None

    @model_validator(mode="after")
    def _one(self):
        _table_or_query(self)
        return self


class PostgresSource(_Source):
    type: Literal["postgres"]
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_$.]+$")
    query: str | None = None

    @model_validator(mode="after")
    def _one(self):
        _table_or_query(self)
        return self


class SparkSource(_Source):
    type: Literal["spark"]
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_.]+$")
    path: SourcePath | None = None
    file_format: Literal["parquet", "csv", "json", "avro", "delta"] = "parquet"

    @model_validator(mode="after")
    def _one(self):
        if (self.table is None) == (self.path is None):
            raise PydanticCustomError("mlc_one_of", "set exactly one of `table` and `path`", {})
        return self


class KafkaSource(_Source):
    type: Literal["kafka"]
    bootstrap_servers: str = Field(min_length=1)
    topic: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    format: Literal["json", "avro", "protobuf"] = "json"
    batch_source: Name = Field(description="Batch source holding the same data, for training.")
    watermark_delay: Seconds = "5m"


class PushSource(_Source):
    type: Literal["push"]
    batch_source: Name = Field(description="Batch source holding the same data, for training.")


Source = Annotated[
    FileSource | BigQuerySource | SnowflakeSource | RedshiftSource | PostgresSource | SparkSource
    | KafkaSource | PushSource,
    Field(discriminator="type"),
]

STREAM_SOURCE_TYPES = ("kafka", "push")
