"""Vector stores: the Milvus connections of `vectorStores`, each feature view's
`vectorStore` and each batch endpoint's `batch.vectorStore`, checked against what Milvus
accepts before a step ever connects.

The vectors step (mlc/runtime/vectors.py) reads the latest row per entity from the view's
Parquet source (or the rows the endpoint's `score` step just scored) and upserts it, keyed by
the view's join key (or the endpoint's `key`); so the key, the names, the index parameters
and the scalar types are refused here, located, when Milvus would refuse them. An endpoint's
model must be one that can answer a vector; ml.yaml declares no model's output size, so the
dimension is checked by the scoring step, against the model's first answer.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .. import ir
from ..diagnostics import did_you_mean
from ..names import dns_label
from .context import UNKNOWN_COLUMN, WRONG_KIND, Context
from .platform import secret_ref

BAD_VECTOR_INDEX = "MLC555"
BAD_MILVUS_NAME = "MLC556"
BAD_VECTOR_KEY = "MLC557"
BAD_VECTOR_FIELD = "MLC558"
UNSAFE_VECTOR_STORE = "MLC559"
VECTORS_IN_CSV = "MLC554"
NO_VECTOR_OUTPUT = "MLC567"

TOKEN_ENV = "MLC_VECTOR_STORE_TOKEN"

# Milvus' rule for collection, database and field names.
_MILVUS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
# The build parameters each index type takes, with the range Milvus accepts.
INDEX_PARAMS: dict[str, dict[str, tuple[int, int]]] = {
    "AUTOINDEX": {}, "FLAT": {},
    "HNSW": {"M": (2, 2048), "efConstruction": (1, 2**31 - 1)},
    "IVF_FLAT": {"nlist": (1, 65536)},
}
# The view's value types as Milvus scalar fields; `bytes` has none.
SCALAR_TYPES = frozenset({"bool", "float32", "float64", "int32", "int64", "string",
                          "unix_timestamp"})


# The run-folder file the scoring step hands its vectors to the vectors step in.
SCORED_ROWS = "vectors/scored.parquet"
SCORE_STEP = "vectors"
# Columns of the published scores besides the carried input columns.
_SCORE_COLUMNS = ("model_version",)


def resolve_vector_stores(ctx: Context, secrets: dict[str, ir.SecretRef]
                          ) -> dict[str, ir.VectorStoreConnection | None]:
    return {n: _connection(ctx, n, s, secrets)
            for n, s in sorted(ctx.project.vector_stores.items())}


def resolve_vector_writes(ctx: Context, views: dict[str, ir.FeatureView],
                          sources: dict[str, ir.Source], entities: dict[str, ir.Entity],
                          stores: dict[str, ir.VectorStoreConnection | None]
                          ) -> dict[str, ir.VectorWrite]:
    out = {}
    for name in sorted(ctx.project.features):
        spec = ctx.project.features[name].vector_store
        view = views.get(name)
        if spec is None or view is None:
            continue
        path = ("features", name, "vectorStore")
        errors = len(ctx.diags.errors)
        ctx.check_ref(spec.store, stores, "vector store", (*path, "store"), "vectorStores")
        collection = spec.collection or name
        _check_name(ctx, collection, "collection", (*path, "collection"),
                    None if spec.collection else f"set `collection: {name.replace('-', '_')}`")
        _check_index(ctx, spec.index, (*path, "index"))
        key, key_type = _primary_key(ctx, view, entities, path)
        scalars = _scalar_fields(ctx, view, spec, path)
        _check_vector_field(ctx, view, spec, key, sources, path)
        source = _parquet_source(ctx, view, sources, path)
        store = stores.get(spec.store)
        if len(ctx.diags.errors) > errors or store is None or source is None or key is None:
            continue
        out[name] = ir.VectorWrite(
            view=name, step=dns_label("vectors", name), store=store, collection=collection,
            primary_key=key, primary_key_type=key_type, vector_field=spec.vector_field,
            dimension=spec.dimension, metric=spec.metric, index_type=spec.index.type,
            index_params=dict(sorted(spec.index.params.items())), scalar_fields=scalars,
            source=source.name, timestamp_field=source.timestamp_field or "",
            batch_size=spec.batch_size)
    return out


def _connection(ctx: Context, name: str, spec, secrets) -> ir.VectorStoreConnection | None:
    path = ("vectorStores", name)
    _check_name(ctx, spec.database, "database", (*path, "database"), None)
    token = secret_ref(ctx, secrets, spec.token_secret, (*path, "tokenSecret"))
    host = port = None
    if spec.uri.endswith(".db") and "://" not in spec.uri:
        if not ctx.development:
            ctx.error(UNSAFE_VECTOR_STORE, f"vector store `{name}` is a milvus-lite file, "
                      "which the cluster's pods cannot share or keep", (*path, "uri"),
                      help="point `uri` at a Milvus server (`http://milvus.milvus.svc:19530`), "
                      "or mark a throw-away environment with `platform: {development: true}`")
    else:
        parts = urlsplit(spec.uri)
        try:
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 19530)
        except ValueError:
            host = None
        if not host:
            ctx.error(UNSAFE_VECTOR_STORE, f"vector store `{name}` has no host in `{spec.uri}`",
                      (*path, "uri"), help="write it as `http(s)://host:port`")
            return None
        if token is not None and parts.scheme == "http" and not ctx.development:
            ctx.error(UNSAFE_VECTOR_STORE, f"vector store `{name}` sends its token to "
                      f"`{host}` without TLS", (*path, "uri"),
                      help="use an `https://` uri, or mark a throw-away environment with "
                      "`platform: {development: true}`")
    return ir.VectorStoreConnection(name=name, uri=spec.uri, database=spec.database,
                                    token=token, token_env=TOKEN_ENV, host=host, port=port)


def _check_name(ctx: Context, value: str, what: str, path, help: str | None) -> None:
    if not _MILVUS_NAME.fullmatch(value):
        ctx.error(BAD_MILVUS_NAME, f"`{value}` is not a Milvus {what} name", path,
                  help=help or "start with a letter or `_`, then letters, digits or `_` "
                  "(at most 255)")


def _check_index(ctx: Context, index, path) -> None:
    accepted = INDEX_PARAMS[index.type]
    for key in sorted(index.params):
        value = index.params[key]
        if key not in accepted:
            ctx.error(BAD_VECTOR_INDEX, f"`{key}` is not a parameter of {index.type} indexes",
                      (*path, "params", key), help=did_you_mean(key, accepted) or (
                          f"{index.type} takes " + (", ".join(f"`{k}`" for k in accepted)
                                                    or "no parameters")))
        elif not accepted[key][0] <= value <= accepted[key][1]:
            low, high = accepted[key]
            ctx.error(BAD_VECTOR_INDEX, f"`{key}` of {index.type} indexes must be between "
                      f"{low} and {high}, not {value}", (*path, "params", key),
                      help=f"set `{key}` within [{low}, {high}]")


def _primary_key(ctx: Context, view: ir.FeatureView, entities, path):
    if len(view.entities) != 1:
        ctx.error(BAD_VECTOR_KEY, f"feature view `{view.name}` has {len(view.entities)} "
                  "entities, but a Milvus collection has one primary key", path,
                  help="write the embeddings of a view keyed by exactly one entity")
        return None, None
    entity = entities.get(view.entities[0])
    if entity is None:
        return None, None
    if entity.type not in ("int64", "string"):
        ctx.error(BAD_VECTOR_KEY, f"the join key `{entity.join_key}` of `{entity.name}` is "
                  f"{entity.type}, but a Milvus primary key is int64 or string", path,
                  help=f"declare `entities.{entity.name}.type` as `int64` or `string`")
        return None, None
    return entity.join_key, entity.type


def _scalar_fields(ctx: Context, view: ir.FeatureView, spec, path) -> list[ir.FeatureField]:
    by_name = {f.name: f for f in view.fields}
    out: list[ir.FeatureField] = []
    for i, name in enumerate(spec.scalar_fields):
        where = (*path, "scalarFields", i)
        if name not in by_name:
            ctx.error(UNKNOWN_COLUMN, f"`{name}` is not a field of feature view `{view.name}`",
                      where, help=did_you_mean(name, by_name) or "list fields of the view")
        elif by_name[name].type not in SCALAR_TYPES:
            ctx.error(BAD_VECTOR_FIELD, f"field `{name}` is {by_name[name].type}, which a "
                      "Milvus scalar field cannot hold", where,
                      help="store it elsewhere, or leave it out of `scalarFields`")
        elif by_name[name] in out:
            ctx.error("MLC204", f"field `{name}` is listed twice", where, help="remove one")
        else:
            out.append(by_name[name])
    return out


def _check_vector_field(ctx: Context, view: ir.FeatureView, spec, key, sources, path) -> None:
    """The embedding is a list column that Feast's scalar fields cannot type; it must not be
    declared as one, nor reuse the key's or a stored field's name."""
    taken = {f.name: "a scalar field of the view" for f in view.fields}
    source = sources.get(view.source)
    if source is not None and source.timestamp_field:
        taken[source.timestamp_field] = "the source's timestamp field"
    if key:
        taken[key] = "the primary key"
    if spec.vector_field in taken:
        ctx.error(BAD_VECTOR_FIELD, f"vector field `{spec.vector_field}` is "
                  f"{taken[spec.vector_field]}", (*path, "vectorField"),
                  help="name the source's embedding column, a list of "
                  f"{spec.dimension} floats, and leave it out of `fields`")
    if source is not None:
        declared = {c.name: c.type for c in source.columns}
        if spec.vector_field in declared:
            ctx.error(BAD_VECTOR_FIELD, f"vector field `{spec.vector_field}` is declared as "
                      f"column `{source.name}.{spec.vector_field}` of type "
                      f"{declared[spec.vector_field]}",
                      (*path, "vectorField"), help="remove it from the source's `columns`; "
                      "the vectors step checks that it holds lists of "
                      f"{spec.dimension} floats")


def _parquet_source(ctx: Context, view: ir.FeatureView, sources, path) -> ir.Source | None:
    source = sources.get(view.source)
    if source is not None and source.batch_source:
        source = sources.get(source.batch_source)
    if source is None:
        return None
    if source.type != "file" or source.options.get("format") != "parquet":
        ctx.error(WRONG_KIND, f"the vectors step reads `{source.name}`, a {source.type} "
                  "source, but reads Parquet files only", path,
                  help="write the embeddings to a Parquet file source")
        return None
    return source


def resolve_score_vector_writes(ctx: Context, endpoints: dict[str, ir.Endpoint],
                                models: dict[str, ir.Model], sources: dict[str, ir.Source],
                                entities: dict[str, ir.Entity],
                                stores: dict[str, ir.VectorStoreConnection | None]
                                ) -> dict[str, ir.VectorWrite]:
    """Each batch endpoint's `batch.vectorStore`, keyed `serving.<endpoint>`."""
    out = {}
    for name in sorted(ctx.project.serving):
        e = ctx.project.serving[name]
        spec = e.batch.vector_store if e.batch else None
        endpoint = endpoints.get(name)
        if spec is None or endpoint is None or endpoint.batch is None or e.mode != "batch":
            continue
        model = models.get(endpoint.model)
        source = sources.get(endpoint.batch.input_source)
        path = ("serving", name, "batch", "vectorStore")
        errors = len(ctx.diags.errors)
        ctx.check_ref(spec.store, stores, "vector store", (*path, "store"), "vectorStores")
        collection = spec.collection or name
        _check_name(ctx, collection, "collection", (*path, "collection"),
                    None if spec.collection else f"set `collection: {name.replace('-', '_')}`")
        _check_index(ctx, spec.index, (*path, "index"))
        if endpoint.batch.format == "csv":
            ctx.error(VECTORS_IN_CSV, f"endpoint `{name}` publishes CSV, which cannot hold "
                      f"its `{spec.vector_field}` vectors", ("serving", name, "batch",
                                                             "format" if e.batch.format
                                                             else "output"),
                      help="publish Parquet: `format: parquet`, or an output ending in `/` "
                      "or `.parquet`")
        if model is not None:
            _check_vector_model(ctx, model, name, path)
        if model is None or source is None:
            continue
        columns = _input_columns(model, source, entities)
        key, key_type = _score_key(ctx, spec, model, columns, path)
        scalars = _score_scalars(ctx, spec, columns, path)
        taken = {f.name: "a scalar field" for f in scalars}
        taken.update({k: "an entity key the scores carry" for k in model.entity_keys})
        if source.timestamp_field:
            taken[source.timestamp_field] = "the input's timestamp field"
        taken.update({c: "a column of the published scores" for c in _SCORE_COLUMNS})
        if key:
            taken[key] = "the primary key"
        if spec.vector_field in taken:
            ctx.error(BAD_VECTOR_FIELD, f"vector field `{spec.vector_field}` is "
                      f"{taken[spec.vector_field]}", (*path, "vectorField"),
                      help="give the model's output vector a name of its own, e.g. "
                      "`vectorField: embedding`")
        store = stores.get(spec.store)
        if len(ctx.diags.errors) > errors or store is None or key is None:
            continue
        out[f"serving.{name}"] = ir.VectorWrite(
            view=None, endpoint=name, step=SCORE_STEP, store=store, collection=collection,
            primary_key=key, primary_key_type=key_type, vector_field=spec.vector_field,
            dimension=spec.dimension, metric=spec.metric, index_type=spec.index.type,
            index_params=dict(sorted(spec.index.params.items())), scalar_fields=scalars,
            source=source.name, timestamp_field=source.timestamp_field or "",
            batch_size=spec.batch_size, rows_file=SCORED_ROWS)
    return out


def _check_vector_model(ctx: Context, model: ir.Model, endpoint: str, path) -> None:
    """A classifier answers a label (or one probability per class), a model of mlc's bundled
    trainers (the torch MLP, XGBoost, LightGBM, scikit-learn; regression or ranking) one
    number: neither is an embedding. A custom trainer's model, or one registered by other
    means, may answer a vector; its length is checked when it runs."""
    if model.task == "classification":
        why = "a classifier, which answers a class label or its probabilities"
    elif model.pipeline is not None and model.training.kind == "builtin":
        why = (f"trained by mlc's bundled {model.framework} trainer, whose {model.task} model "
               "answers one number per row")
    else:
        return
    ctx.error(NO_VECTOR_OUTPUT, f"endpoint `{endpoint}` writes vectors to a vector store, but "
              f"its model `{model.name}` is {why}, not a vector", path,
              help="serve a model whose MLflow model returns an embedding per row (a "
              "`regression` model with `training.custom`, or one registered by other means), "
              "or remove `vectorStore`")


def _input_columns(model: ir.Model, source: ir.Source,
                   entities: dict[str, ir.Entity]) -> dict[str, str]:
    """The columns a scored row carries, with their types: the model's entity keys, its
    features, and the input source's declared columns (which win)."""
    out: dict[str, str] = {}
    for ref in model.features:
        out[ref.field] = ref.type
    by_key = {e.join_key: e.type for e in entities.values()}
    for key in model.entity_keys:
        if key in by_key:
            out[key] = by_key[key]
    for column in source.columns:
        out[column.name] = column.type
    return out


def _score_key(ctx: Context, spec, model: ir.Model, columns: dict[str, str], path):
    key = spec.key
    where = (*path, "key")
    if key is None:
        if len(model.entity_keys) != 1:
            ctx.error(BAD_VECTOR_KEY, f"model `{model.name}` has {len(model.entity_keys)} "
                      "entity keys, but a Milvus collection has one primary key", path,
                      help="name the input column that keys each vector: `key: <column>`")
            return None, None
        key, where = model.entity_keys[0], path
    if key not in columns:
        ctx.error(UNKNOWN_COLUMN, f"`{key}` is not a column the scored rows carry", where,
                  help=did_you_mean(key, columns) or "name an entity key of the model, one of "
                  "its features, or a column declared under the input source's `columns`")
        return None, None
    if columns[key] not in ("int64", "string"):
        ctx.error(BAD_VECTOR_KEY, f"the key `{key}` is {columns[key]}, but a Milvus primary "
                  "key is int64 or string", where,
                  help=f"declare `{key}` as `int64` or `string`, or key the vectors by "
                  "another column")
        return None, None
    return key, columns[key]


def _score_scalars(ctx: Context, spec, columns: dict[str, str], path
                   ) -> list[ir.FeatureField]:
    out: list[ir.FeatureField] = []
    for i, name in enumerate(spec.scalar_fields):
        where = (*path, "scalarFields", i)
        if name not in columns:
            ctx.error(UNKNOWN_COLUMN, f"`{name}` is not a column the scored rows carry", where,
                      help=did_you_mean(name, columns) or "name an entity key or feature of "
                      "the model, or a column declared under the input source's `columns`")
        elif columns[name] not in SCALAR_TYPES:
            ctx.error(BAD_VECTOR_FIELD, f"column `{name}` is {columns[name]}, which a Milvus "
                      "scalar field cannot hold", where,
                      help="store it elsewhere, or leave it out of `scalarFields`")
        elif any(f.name == name for f in out):
            ctx.error("MLC204", f"column `{name}` is listed twice", where, help="remove one")
        else:
            out.append(ir.FeatureField(name=name, type=columns[name], description=None,
                                       tags={}))
    return out
