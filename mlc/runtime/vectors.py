"""The vectors step: a feature view's latest embeddings, or a batch endpoint's model outputs,
upserted into a Milvus collection.

Runs after `materialize` in the materialisation pipeline, or after `score` in a batch
endpoint's scoring pipeline (`write_vectors` steps, mlc/compiler/resolve/vectors.py). It reads
the view's Parquet source (or the rows `score` left in the run folder,
mlc/runtime/serve/batch.py), keeps the newest row per primary key (by the source's timestamp
field), creates the collection and its index when missing, refuses one whose schema differs
(rather than drop a user's data), and upserts in batches: the primary key makes a rerun
replace rows instead of adding them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from mlc.compiler import ir
from mlc.runtime import step_summary
from mlc.runtime.sources import files
from mlc.runtime.step import EXIT_BAD_DATA, StepContext, StepFailed

# Longest string Milvus keeps in a VARCHAR field.
VARCHAR_MAX = 65535


def run(ctx: StepContext) -> None:
    write = _write_of(ctx)
    rows = latest_rows(ctx, write)
    client = connect(ctx, write.store)
    created = ensure_collection(client, write)
    for start in range(0, len(rows), write.batch_size):
        client.upsert(write.collection, rows[start:start + write.batch_size])
    client.load_collection(write.collection)
    stored = int(client.get_collection_stats(write.collection)["row_count"])
    owner = {"endpoint": write.endpoint} if write.endpoint else {"view": write.view}
    step_summary.write(ctx, [{"kind": "vectors", **owner,
                              "collection": write.collection, "upserted": len(rows),
                              "stored": stored, "created": created}])
    print(f"upserted {len(rows)} vectors of `{write.endpoint or write.view}` into "
          f"{write.collection} ({stored} stored)")


def _write_of(ctx: StepContext) -> ir.VectorWrite:
    endpoint = ctx.pipeline.endpoint if ctx.pipeline.kind == "batch_scoring" else None
    for write in ctx.project.vector_writes.values():
        if write.step == ctx.step.name and write.endpoint == endpoint:
            return write
    raise StepFailed(f"step `{ctx.step.name}` writes no feature view's or endpoint's vectors")


def scored_rows_path(ctx: StepContext, write: ir.VectorWrite) -> Path:
    """Where the scoring step leaves an endpoint's rows for its vectors step."""
    assert write.rows_file
    return ctx.run_dir / write.rows_file


def _read_rows(ctx: StepContext, write: ir.VectorWrite, columns: list[str]) -> list[dict]:
    if write.rows_file is None:
        return files.read(ctx, ctx.project.sources[write.source], columns).to_pylist()
    import pyarrow.parquet as pq

    path = scored_rows_path(ctx, write)
    if not path.is_file():
        raise StepFailed(f"the scoring step left no rows in {path}: run `score` first")
    table = pq.read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise StepFailed(f"the scored rows in {path} lack {', '.join(missing)}")
    return table.select(columns).to_pylist()


def connect(ctx: StepContext, store: ir.VectorStoreConnection):
    from pymilvus import MilvusClient

    uri = store.uri
    if store.host is None:  # a milvus-lite file, relative to the data root like a source
        path = ctx.data_root / uri
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = str(path)
    token = os.environ.get(store.token_env, "") if store.token else ""
    try:
        return MilvusClient(uri=uri, token=token, db_name=store.database)
    except Exception as exc:  # pymilvus raises its own and grpc's errors alike
        raise StepFailed(f"cannot connect to vector store `{store.name}` at {store.uri}: "
                         f"{exc}") from exc


def latest_rows(ctx: StepContext, write: ir.VectorWrite) -> list[dict[str, Any]]:
    """The newest row per key, as Milvus entities, after checking every vector."""
    columns = [write.primary_key, write.vector_field, *(f.name for f in write.scalar_fields)]
    if write.timestamp_field:
        columns.append(write.timestamp_field)
    table = _read_rows(ctx, write, columns)
    if write.timestamp_field:  # Python's sort is stable: among equal times the last row wins
        table.sort(key=lambda r: (r[write.timestamp_field] is not None,
                                  r[write.timestamp_field] or 0))
    latest: dict[Any, dict[str, Any]] = {}
    for row in table:
        key = row[write.primary_key]
        if key is None:
            continue
        latest[key] = row
    out = []
    for key in sorted(latest):
        row = latest[key]
        vector = row[write.vector_field]
        _check_vector(write, key, vector)
        entity = {write.primary_key: key, write.vector_field: [float(x) for x in vector]}
        for f in write.scalar_fields:
            entity[f.name] = _scalar(row[f.name], f.type)
        out.append(entity)
    return out


def _check_vector(write: ir.VectorWrite, key, vector) -> None:
    where = f"`{write.vector_field}` of {write.primary_key} = {key!r} in " + (
        f"the scores of `{write.endpoint}`" if write.endpoint else f"`{write.source}`")
    if not isinstance(vector, list):
        raise StepFailed(f"{where} is {type(vector).__name__}, not a list of floats",
                         EXIT_BAD_DATA)
    if len(vector) != write.dimension:
        raise StepFailed(f"{where} has {len(vector)} values, but `dimension` is "
                         f"{write.dimension}", EXIT_BAD_DATA)
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in vector):
        raise StepFailed(f"{where} holds a value that is not a finite number", EXIT_BAD_DATA)


def _scalar(value, type_: str):
    if value is not None and type_ == "unix_timestamp" and hasattr(value, "timestamp"):
        return int(value.timestamp())
    return value


def _milvus_type(type_: str):
    from pymilvus import DataType

    return {"bool": DataType.BOOL, "int32": DataType.INT32, "int64": DataType.INT64,
            "float32": DataType.FLOAT, "float64": DataType.DOUBLE, "string": DataType.VARCHAR,
            "unix_timestamp": DataType.INT64}[type_]


def collection_schema(write: ir.VectorWrite):
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    key = {"max_length": VARCHAR_MAX} if write.primary_key_type == "string" else {}
    schema.add_field(write.primary_key, _milvus_type(write.primary_key_type), is_primary=True,
                     **key)
    schema.add_field(write.vector_field, DataType.FLOAT_VECTOR, dim=write.dimension)
    for f in write.scalar_fields:
        extra = {"max_length": VARCHAR_MAX} if f.type == "string" else {}
        schema.add_field(f.name, _milvus_type(f.type), nullable=True, **extra)
    return schema


def ensure_collection(client, write: ir.VectorWrite) -> bool:
    """Create the collection and its index when missing; True when it was created."""
    if client.has_collection(write.collection):
        _check_existing(client, write)
        if write.vector_field not in client.list_indexes(write.collection):
            client.create_index(write.collection, _index_params(client, write))
        return False
    client.create_collection(write.collection, schema=collection_schema(write),
                             index_params=_index_params(client, write))
    return True


def _index_params(client, write: ir.VectorWrite):
    params = client.prepare_index_params()
    params.add_index(field_name=write.vector_field, index_type=write.index_type,
                     metric_type=write.metric, params=dict(write.index_params))
    return params


def _check_existing(client, write: ir.VectorWrite) -> None:
    """A collection made otherwise (by hand, or by an older ml.yaml) is reported, not dropped."""
    found = {f["name"]: f for f in client.describe_collection(write.collection)["fields"]}
    wanted = {f["name"]: f for f in
              (field.to_dict() for field in collection_schema(write).fields)}
    for name, field in wanted.items():
        have = found.get(name)
        if have is None:
            problem = "has no such field"
        elif have["type"] != field["type"]:
            problem = f"holds it as {have['type'].name}, not {field['type'].name}"
        elif name == write.vector_field and int(have["params"].get("dim", 0)) != write.dimension:
            problem = f"has dimension {have['params'].get('dim')}, not {write.dimension}"
        else:
            continue
        raise StepFailed(f"collection {write.collection} exists with another schema: field "
                         f"`{name}`: it {problem}; drop or rename the collection")
