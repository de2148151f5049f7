"""Reading a source, whatever its type: what every step that reads data goes through.

    file         pyarrow, straight from the path (files.py)
    warehouse    bigquery, snowflake, redshift, postgres, spark: our SELECT, run by the Feast
                 offline store of the environment (warehouse.py, queries.py)
    stream       kafka, push: their `batchSource`, where the same rows land

Label joins and training data (train/data.py), data validation (train/validation.py), the
batch-scoring input (serve/batch.py) and drift windows (drift/step.py) all call `read`.
`start`/`end` narrow a warehouse read to a time window in the query; file reads return the
whole file, so callers filter on the event time themselves either way.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from mlc.compiler import ir
from mlc.runtime.step import StepContext, StepFailed

from . import files, warehouse
from .queries import WAREHOUSE_TYPES


def readable(ctx: StepContext, source: ir.Source) -> ir.Source:
    """The batch source that holds a source's rows: itself, or a stream's batchSource."""
    if source.batch_source:
        return ctx.project.sources[source.batch_source]
    return source


def location(ctx: StepContext, source: ir.Source) -> str:
    source = readable(ctx, source)
    if source.type == "file":
        return files.location(ctx, source)
    return warehouse.describe(source)


def read(ctx: StepContext, source: ir.Source, columns: list[str] | None = None, *,
         start: dt.datetime | None = None, end: dt.datetime | None = None) -> pa.Table:
    source = readable(ctx, source)
    if source.type == "file":
        return files.read(ctx, source, columns)
    if source.type in WAREHOUSE_TYPES:
        return warehouse.read(ctx, source, columns, start, end)
    raise StepFailed(f"source `{source.name}` is a {source.type} source with no batch source "
                     "to read")
