"""The SELECT each warehouse source is read with, per dialect (no warehouse needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from mlc.compiler import ir
from mlc.runtime.sources.queries import select_query
from mlc.runtime.sources.warehouse import STORE_TYPES

START, END = dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2024, 1, 2, tzinfo=dt.UTC)


def _source(kind: str, **options) -> ir.Source:
    return ir.Source(name="s", type=kind, timestamp_field="ts", created_timestamp_field=None,
                     columns=[], min_rows=None, max_staleness_seconds=None, description=None,
                     owner=None, tags={}, options=options, batch_source=None,
                     origin=ir.Origin(file="ml.yaml", line=1, path="sources.s"))


@pytest.mark.parametrize(("source", "expected"), [
    (_source("bigquery", table="proj.ds.events"),
     "SELECT mlc_source.`user_id`, mlc_source.`order`\nFROM `proj.ds.events` AS mlc_source\n"
     "WHERE mlc_source.`ts` >= TIMESTAMP '2024-01-01 00:00:00.000000+00:00'\n"
     "  AND mlc_source.`ts` < TIMESTAMP '2024-01-02 00:00:00.000000+00:00'"),
    (_source("snowflake", database="DB", db_schema="PUBLIC", table="EVENTS"),
     'SELECT mlc_source."user_id", mlc_source."order"\nFROM "DB"."PUBLIC"."EVENTS" AS '
     "mlc_source\nWHERE mlc_source.\"ts\" >= TO_TIMESTAMP_TZ('2024-01-01 00:00:00.000000+00:00')"
     "\n  AND mlc_source.\"ts\" < TO_TIMESTAMP_TZ('2024-01-02 00:00:00.000000+00:00')"),
    (_source("redshift", database="dev", db_schema="analytics", table="events"),
     'SELECT mlc_source."user_id", mlc_source."order"\nFROM "analytics"."events" AS mlc_source'
     "\nWHERE mlc_source.\"ts\" >= '2024-01-01 00:00:00.000000+00:00'::timestamptz\n"
     "  AND mlc_source.\"ts\" < '2024-01-02 00:00:00.000000+00:00'::timestamptz"),
    (_source("spark", table="db.events"),
     "SELECT mlc_source.`user_id`, mlc_source.`order`\nFROM `db`.`events` AS mlc_source\n"
     "WHERE mlc_source.`ts` >= to_timestamp('2024-01-01 00:00:00.000000')\n"
     "  AND mlc_source.`ts` < to_timestamp('2024-01-02 00:00:00.000000')"),
])
def test_cloud_warehouse_queries(source, expected):
    assert select_query(source, ["user_id", "order"], START, END) == expected


def test_a_query_source_is_a_subquery_and_all_columns_without_a_list():
    source = _source("bigquery", query="SELECT * FROM `p.d.t` WHERE x > 1;\n")
    assert select_query(source) == "SELECT mlc_source.*\nFROM (SELECT * FROM `p.d.t` WHERE x > 1)" \
        " AS mlc_source"


def test_spark_path_sources_read_the_path_in_their_format():
    source = _source("spark", path="s3a://bucket/events/", file_format="delta")
    assert select_query(source, None, START) == (
        "SELECT mlc_source.*\nFROM delta.`s3a://bucket/events/` AS mlc_source\n"
        "WHERE mlc_source.`ts` >= to_timestamp('2024-01-01 00:00:00.000000')")


def test_quotes_in_names_are_doubled():
    assert select_query(_source("snowflake", database="D", db_schema="S", table="T"),
                        ['we"ird']).startswith('SELECT mlc_source."we""ird"')


def test_reader_store_types_are_the_ones_the_feast_backend_writes():
    from mlc.compiler.backends.feast.store_config import OFFLINE_STORES

    assert {k: OFFLINE_STORES[k][0] for k in STORE_TYPES} == STORE_TYPES


def _feast_source(source: ir.Source):
    """The Feast source object the generated repo declares for `source`."""
    import feast
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
        PostgreSQLSource,
    )

    o = source.options
    common = {"name": source.name, "timestamp_field": source.timestamp_field}
    if source.type == "bigquery":
        return feast.BigQuerySource(table=o.get("table"), query=o.get("query"), **common)
    if source.type == "snowflake":
        return feast.SnowflakeSource(database=o.get("database"), schema=o.get("db_schema"),
                                     table=o.get("table"), query=o.get("query"), **common)
    if source.type == "redshift":
        return feast.RedshiftSource(database=o.get("database"), schema=o.get("db_schema"),
                                    table=o.get("table"), query=o.get("query"), **common)
    return PostgreSQLSource(table=o.get("table"), query=o.get("query"), **common)


@pytest.mark.parametrize("source", [
    _source("bigquery", table="proj.ds.events"),
    _source("bigquery", query="SELECT 1 AS x"),
    _source("snowflake", database="DB", db_schema="PUBLIC", table="EVENTS"),
    _source("redshift", database="dev", db_schema="analytics", table="events"),
    _source("redshift", database="dev", db_schema="public", query="SELECT * FROM t"),
    _source("postgres", table="public.events"),
    _source("postgres", query="SELECT * FROM events"),
])
def test_steps_read_the_table_feast_reads(source):
    """The FROM of a step's query is Feast's own reference to the same source."""
    pytest.importorskip("feast")
    from mlc.runtime.sources.queries import from_expression

    assert from_expression(source) == _feast_source(source).get_table_query_string()
