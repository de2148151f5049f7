"""Sources, entities, feature views and feature services: references, columns, cycles."""

from __future__ import annotations

import ast

from ...schema.sources import STREAM_SOURCE_TYPES
from ...schema.types import duration_seconds
from .. import ir
from ..diagnostics import did_you_mean
from .context import (
    BAD_EXPRESSION,
    CYCLE,
    UNKNOWN_COLUMN,
    UNKNOWN_REFERENCE,
    WRONG_KIND,
    Context,
)
from .data_checks import expectation_suite
from .data_versions import data_version
from .upstream import upstream

# Source settings copied into the IR's `options`, per type (the rest of the fields are common).
_COMMON = {"type", "timestamp_field", "created_timestamp_field", "columns", "checks",
           "description", "owner", "tags", "batch_source", "version", "produced_by",
           "auth", "ingest"}  # a Kafka source's connection and consumers: resolve/streams.py


def resolve_sources(ctx: Context) -> dict[str, ir.Source]:
    sources = ctx.project.sources
    out = {}
    for name in sorted(sources):
        s = sources[name]
        path = ("sources", name)
        batch = getattr(s, "batch_source", None)
        if batch is not None and ctx.check_ref(batch, sources, "source",
                                               (*path, "batchSource"), "sources"):
            if sources[batch].type in STREAM_SOURCE_TYPES:
                ctx.error(WRONG_KIND, f"`batchSource` of `{name}` must be a batch source, but "
                          f"`{batch}` is a {sources[batch].type} stream", (*path, "batchSource"),
                          help="point it at the file or warehouse table the stream lands in")
        options = {k: (None if v is None else str(v)) for k, v in
                   sorted(s.model_dump(exclude=_COMMON).items())}
        out[name] = ir.Source(
            name=name, type=s.type, timestamp_field=s.timestamp_field,
            created_timestamp_field=s.created_timestamp_field,
            columns=[ir.Column(name=c.name, type=c.type, nullable=c.nullable, min=c.min,
                               max=c.max, allowed=c.allowed) for c in s.columns],
            min_rows=s.checks.min_rows,
            max_staleness_seconds=(int(duration_seconds(s.checks.max_staleness))
                                   if s.checks.max_staleness else None),
            description=s.description, owner=s.owner, tags=dict(sorted(s.tags.items())),
            options=options, batch_source=batch, origin=ctx.origin(path))
        if s.type not in STREAM_SOURCE_TYPES:  # a stream is checked through its batch source
            out[name] = out[name].model_copy(
                update={"expectations": expectation_suite(out[name]),
                        "version": data_version(ctx, name, s),
                        "produced_by": upstream(ctx, name, s)})
        _check_columns_unique(ctx, s.columns, path)
    return out


def _check_columns_unique(ctx: Context, columns, path) -> None:
    seen: set[str] = set()
    for i, c in enumerate(columns):
        if c.name in seen:
            ctx.error("MLC204", f"column `{c.name}` is declared twice", (*path, "columns", i),
                      help="remove one of them")
        seen.add(c.name)


def resolve_entities(ctx: Context) -> dict[str, ir.Entity]:
    ents = ctx.project.entities
    return {n: ir.Entity(name=n, join_key=e.join_key, type=e.type, description=e.description,
                         tags=dict(sorted(e.tags.items()))) for n, e in sorted(ents.items())}


def resolve_feature_views(ctx: Context, sources: dict[str, ir.Source],
                          entities: dict[str, ir.Entity]) -> dict[str, ir.FeatureView]:
    out = {}
    for name in sorted(ctx.project.features):
        v = ctx.project.features[name]
        path = ("features", name)
        ctx.check_ref(v.source, sources, "source", (*path, "source"), "sources")
        keys = []
        for i, e in enumerate(v.entities):
            if ctx.check_ref(e, entities, "entity", (*path, "entities", i), "entities"):
                keys.append(entities[e].join_key)
        source = sources.get(v.source)
        columns = {c.name: c for c in source.columns} if source else {}
        names: set[str] = set()
        for i, f in enumerate(v.fields):
            if f.name in names:
                ctx.error("MLC204", f"field `{f.name}` is declared twice in `{name}`",
                          (*path, "fields", i, "name"), help="remove one of them")
            names.add(f.name)
            if columns and f.name not in columns:

                ctx.error(UNKNOWN_COLUMN, f"field `{f.name}` is not a column of source "
                          f"`{v.source}`", (*path, "fields", i, "name"),
                          help=did_you_mean(f.name, columns) or "add it to the source's columns")
            elif columns and columns[f.name].type != f.type:
                ctx.warning("MLC209", f"field `{f.name}` is {f.type} but column "
                            f"`{v.source}.{f.name}` is {columns[f.name].type}",
                            (*path, "fields", i, "type"), help="make the two types agree")
        derived = _resolve_derived(ctx, v, path, names)
        out[name] = ir.FeatureView(
            name=name, entities=list(v.entities), join_keys=keys, source=v.source,
            stream=bool(source and source.type in STREAM_SOURCE_TYPES),
            fields=[ir.FeatureField(name=f.name, type=f.type, description=f.description,
                                    tags=dict(sorted(f.tags.items()))) for f in v.fields],
            derived=derived, ttl_seconds=int(duration_seconds(v.ttl)), online=v.online,
            materialization_schedule=v.materialization.schedule, description=v.description,
            owner=v.owner, tags=dict(sorted(v.tags.items())), origin=ctx.origin(path))
    return out


# The Feast backend parenthesizes every operation, and Python refuses source nested more than
# 200 parentheses deep (and recursion runs out long before a 500-character limit would stop
# `------x`); no derived feature needs more than a handful of levels.
MAX_EXPRESSION_DEPTH = 64

_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Add, ast.Sub, ast.Mult, ast.Div,
                  ast.USub, ast.UAdd, ast.Name, ast.Load, ast.Constant)


def expression_inputs(expression: str) -> list[str] | str:
    """The names an arithmetic expression reads, or why it is not one we accept."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        return f"it does not parse: {exc.msg}"
    except (RecursionError, MemoryError, ValueError):
        return "it is nested too deeply to parse"
    if expression_depth(tree.body) > MAX_EXPRESSION_DEPTH:
        return (f"it nests operations more than {MAX_EXPRESSION_DEPTH} levels deep; split it "
                "into several derived features")
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            return f"`{type(node).__name__}` is not allowed; use names, numbers, + - * / and ( )"
        if isinstance(node, ast.Constant) and (
                isinstance(node.value, bool) or not isinstance(node.value, (int, float))):
            return "only numeric constants are allowed"
        if isinstance(node, ast.Constant) and node.value in (float("inf"), float("-inf")):
            return f"`{node.value}` is not a finite number"  # `1e999` reads as infinity
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)})


def expression_depth(node: ast.AST) -> int:
    """How deeply operations nest in an expression tree (a name or a number is 1); counted
    without recursion, so a degenerate tree cannot exhaust the stack."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current)
                     if isinstance(child, ast.expr))
    return deepest


def _resolve_derived(ctx: Context, view, path, fields: set[str]) -> list[ir.DerivedFeature]:
    derived_names = {d.name for d in view.derived}
    graph: dict[str, list[str]] = {}
    out = []
    for i, d in enumerate(view.derived):
        dpath = (*path, "derived", i, "expression")
        if d.name in fields:
            ctx.error("MLC204", f"derived feature `{d.name}` has the name of a field",
                      (*path, "derived", i, "name"), help="rename it")
        inputs = expression_inputs(d.expression)
        if isinstance(inputs, str):
            ctx.error(BAD_EXPRESSION, f"invalid expression for `{d.name}`: {inputs}", dpath,
                      help="for example `amount / (amount_avg_7d + 1)`")
            continue
        for name in inputs:
            if name not in fields and name not in derived_names:

                ctx.error(UNKNOWN_REFERENCE, f"`{d.name}` reads `{name}`, which is not a field "
                          "of this view", dpath,
                          help=did_you_mean(name, fields | derived_names))
        graph[d.name] = [n for n in inputs if n in derived_names]
        out.append(ir.DerivedFeature(name=d.name, type=d.type, expression=d.expression,
                                     inputs=inputs, description=d.description))
    cycle = find_cycle(graph)
    if cycle:
        index = [d.name for d in view.derived].index(cycle[0])
        ctx.error(CYCLE, "derived features depend on each other in a cycle: "
                  + " -> ".join(cycle), (*path, "derived", index),
                  help="compute one of them from plain fields")
    return out


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle in `graph` as [a, b, ..., a], or None. Iterative and in sorted order."""
    state: dict[str, int] = {}
    for root in sorted(graph):
        if state.get(root):
            continue
        stack = [(root, iter(sorted(graph.get(root, []))))]
        trail = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                trail.pop()
            elif state.get(child) == 1:
                return trail[trail.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                trail.append(child)
                stack.append((child, iter(sorted(graph.get(child, [])))))
    return None


def feature_refs(ctx: Context, refs: list[str], views: dict[str, ir.FeatureView],
                 path) -> list[ir.FeatureRef]:
    """`view` or `view:field` strings -> typed references, in the order written."""
    out: list[ir.FeatureRef] = []
    for i, ref in enumerate(refs):
        view_name, _, field = ref.partition(":")
        if not ctx.check_ref(view_name, views, "feature view", (*path, i), "features"):
            continue
        view = views[view_name]
        plain = {f.name: f.type for f in view.fields}
        derived = {d.name: d.type for d in view.derived}
        chosen = [field] if field else [*plain, *derived]
        for name in chosen:
            if name in plain or name in derived:
                out.append(ir.FeatureRef(view=view_name, field=name,
                                         type=plain.get(name) or derived[name],
                                         derived=name in derived))
            else:

                ctx.error(UNKNOWN_REFERENCE, f"feature view `{view_name}` has no field `{name}`",
                          (*path, i), help=did_you_mean(name, [*plain, *derived]))
    seen: set[str] = set()
    for ref in out:
        if ref.field in seen:
            ctx.error("MLC204", f"feature `{ref.field}` is selected twice (names must be unique "
                      "across the views a model reads)", path,
                      help="select it from one view only")
        seen.add(ref.field)
    return out


def resolve_feature_services(ctx: Context, views: dict[str, ir.FeatureView]
                             ) -> dict[str, ir.FeatureService]:
    out = {}
    for name in sorted(ctx.project.feature_services):
        s = ctx.project.feature_services[name]
        refs = feature_refs(ctx, s.features, views, ("featureServices", name, "features"))
        out[name] = ir.FeatureService(name=name, features=refs, description=s.description,
                                      tags=dict(sorted(s.tags.items())), synthesized=False)
    return out


def check_source_cycles(ctx: Context) -> None:
    graph = {n: [s.batch_source] for n, s in ctx.project.sources.items()
             if getattr(s, "batch_source", None)}
    cycle = find_cycle(graph)
    if cycle:
        ctx.error(CYCLE, "sources refer to each other in a cycle: " + " -> ".join(cycle),
                  ("sources", cycle[0], "batchSource"),
                  help="a stream's batchSource must be a file or warehouse source")


# The source types each offline store reads: Feast joins a view's batch source in the
# environment's offline store, which reads only its own kind of table or file.
_OFFLINE_STORE_SOURCES = {"file": "file", "bigquery": "bigquery", "snowflake": "snowflake",
                          "redshift": "redshift", "spark": "spark", "postgres": "postgres"}


def check_feast_support(ctx: Context, platform: ir.Platform, sources: dict[str, ir.Source],
                        views: dict[str, ir.FeatureView]) -> None:
    """What the schema allows but the feature store of this environment cannot serve."""
    offline = platform.offline_store_type
    for name, view in views.items():
        source = sources.get(view.source)
        if source is None:
            continue
        if platform.online_store_type == "sqlite" and "-" in name:
            # Feast 0.67 writes `<project>_<view>` unquoted into SQLite's CREATE TABLE.
            ctx.error("MLC210", f"feature view `{name}` has a `-` in its name, which the "
                      "SQLite online store cannot hold", ("features", name),
                      help=f"rename it to `{name.replace('-', '_')}`")
        if source.type == "kafka" and source.options.get("format") == "protobuf":
            ctx.error(WRONG_KIND, f"feature view `{name}` reads protobuf messages from "
                      f"`{source.name}`, for which mlc cannot generate a Feast schema",
                      ("sources", source.name, "format"), help="use `json` or `avro`")
        batch = sources.get(source.batch_source) if source.batch_source else source
        if batch is None:
            continue
        if batch.type == "file" and batch.options.get("format") == "csv":
            ctx.error(WRONG_KIND, f"feature view `{name}` reads `{batch.name}`, a CSV file; "
                      "Feast reads Parquet files only", ("sources", batch.name, "format"),
                      help="convert the file to Parquet")
        elif batch.type != _OFFLINE_STORE_SOURCES[offline]:
            ctx.error(WRONG_KIND, f"feature view `{name}` reads `{batch.name}`, a "
                      f"{batch.type} source, but this environment's offline store is {offline}",
                      ("features", name, "source"),
                      help="read one kind of source in all feature views, or set "
                      "`platform.featureStore.offlineStore.type` to the kind they read")
