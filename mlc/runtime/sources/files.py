"""File sources: a Parquet or CSV file or folder, on local disk or in an object store."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads

from mlc.compiler import ir
from mlc.runtime.step import StepContext, StepFailed


def location(ctx: StepContext, source: ir.Source) -> str:
    path = source.options.get("path") or ""
    if source.version is not None:
        return f"{path} ({source.version.label()})"
    if "://" in path or Path(path).is_absolute():
        return path
    return str(ctx.data_root / path)


def read(ctx: StepContext, source: ir.Source, columns: list[str] | None = None) -> pa.Table:
    if source.version is not None:  # DVC, lakeFS, an object version: versions.py
        from . import versions

        return versions.read(ctx, source, columns)
    where = location(ctx, source)
    fmt = source.options.get("format") or "parquet"
    filesystem = None
    if "://" in where:
        from pyarrow import fs

        endpoint = source.options.get("endpoint_override")
        if endpoint and where.startswith("s3://"):
            filesystem = fs.S3FileSystem(endpoint_override=endpoint)
            where = where[len("s3://"):]
        else:
            filesystem, where = fs.FileSystem.from_uri(where)
    try:
        dataset = pads.dataset(where, format=fmt, filesystem=filesystem)
        return dataset.to_table(columns=columns)
    except FileNotFoundError as exc:
        raise StepFailed(f"source `{source.name}`: {where} does not exist") from exc
    except (pa.ArrowInvalid, KeyError) as exc:
        raise StepFailed(f"source `{source.name}` ({where}) cannot be read: {exc}") from exc
