"""The SQL that reads a warehouse source: one SELECT per read, in the warehouse's dialect.

A step reads a source as Feast's offline store reads the same source for a feature view:
the same table reference (quoted as Feast quotes it) or the user's query as a subquery, so
that what data validation checks is what training joins. Only the columns asked for are
selected, and a time window becomes a WHERE clause on the event time, so that a drift
window over a year-long table moves one window of rows, not the table.

Column names come from ml.yaml's field names (letters, digits, `_`), table names from the
schema's patterns; both are quoted anyway, so that a reserved word (`order`, `group`) reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mlc.compiler import ir

WAREHOUSE_TYPES = ("bigquery", "snowflake", "redshift", "postgres", "spark")
ALIAS = "mlc_source"


@dataclass(frozen=True)
class Dialect:
    name: str
    open_quote: str
    close_quote: str

    def quote(self, name: str) -> str:
        # a closing quote inside a name is doubled, as every one of these dialects reads it
        return self.open_quote + name.replace(self.close_quote, self.close_quote * 2) \
            + self.close_quote

    def timestamp(self, value: dt.datetime) -> str:
        text = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
        if self.name == "bigquery":
            return f"TIMESTAMP '{text}'"
        if self.name == "snowflake":
            return f"TO_TIMESTAMP_TZ('{text}')"
        if self.name == "spark":
            return f"to_timestamp('{text[:-6]}')"  # Spark reads the session time zone: UTC
        return f"'{text}'::timestamptz"


DIALECTS = {
    "postgres": Dialect("postgres", '"', '"'),
    "redshift": Dialect("redshift", '"', '"'),
    "snowflake": Dialect("snowflake", '"', '"'),
    "bigquery": Dialect("bigquery", "`", "`"),
    "spark": Dialect("spark", "`", "`"),
}


def from_expression(source: ir.Source) -> str:
    """The table (or the user's query, as a subquery) that a SELECT reads."""
    o = source.options
    query = o.get("query")
    if query:
        return f"({query.strip().rstrip(';')})"
    table = o.get("table") or ""
    if source.type == "bigquery":
        return f"`{table}`"
    if source.type == "snowflake":
        return ".".join(DIALECTS["snowflake"].quote(p) for p in
                        (o.get("database") or "", o.get("db_schema") or "PUBLIC", table))
    if source.type == "redshift":
        parts = table.split(".") if "." in table else [o.get("db_schema") or "public", table]
        return ".".join(DIALECTS["redshift"].quote(p) for p in parts)
    if source.type == "spark":
        if o.get("path"):
            # Spark SQL reads a path directly as `format`.`path`
            return f"{o.get('file_format') or 'parquet'}.{DIALECTS['spark'].quote(o['path'])}"
        return ".".join(DIALECTS["spark"].quote(p) for p in table.split("."))
    if source.type == "postgres":
        return table  # as Feast's PostgreSQLSource: unquoted, so that case folding applies
    raise ValueError(f"`{source.type}` is not a warehouse source")


def select_query(source: ir.Source, columns: list[str] | None = None,
                 start: dt.datetime | None = None, end: dt.datetime | None = None) -> str:
    """SELECT the columns (all when None) of rows with start <= event time < end."""
    dialect = DIALECTS[source.type]
    fields = (", ".join(f"{ALIAS}.{dialect.quote(c)}" for c in columns) if columns
              else f"{ALIAS}.*")
    sql = f"SELECT {fields}\nFROM {from_expression(source)} AS {ALIAS}"
    ts = f"{ALIAS}.{dialect.quote(source.timestamp_field)}"
    conditions = []
    if start is not None:
        conditions.append(f"{ts} >= {dialect.timestamp(start)}")
    if end is not None:
        conditions.append(f"{ts} < {dialect.timestamp(end)}")
    if conditions:
        sql += "\nWHERE " + "\n  AND ".join(conditions)
    return sql
