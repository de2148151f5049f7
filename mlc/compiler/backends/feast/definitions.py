"""features.py: the Feast objects of one environment, as Python that `feast apply` imports.

The shape of the module lives in `features.py.j2`; this file decides what goes into it. Values
reach the template raw and the template prints each through `lit` (a Python literal) or `name`
(a checked identifier); code that this file composes itself (a call, a derived expression) is
built from those same two functions. The template environment refuses to print anything that
is not `Code`, so a string that skipped both is an error, never output.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources

import jinja2

from ....schema.types import duration_seconds
from ...ir import FeatureRef, FeatureView, ResolvedProject, Source
from ...names import python_identifier, short_hash
from .expressions import pandas_expression
from .literals import Code, identifier, py_literal
from .store_config import DATA_ROOT_ENV, is_local_relative

TEMPLATE = "features.py.j2"

# ml.yaml value types -> feast.types (fields) and feast.ValueType (entities).
FEAST_TYPES = {"bool": "Bool", "bytes": "Bytes", "float32": "Float32", "float64": "Float64",
               "int32": "Int32", "int64": "Int64", "string": "String",
               "unix_timestamp": "UnixTimestamp"}
VALUE_TYPES = {"bool": "BOOL", "bytes": "BYTES", "float32": "FLOAT", "float64": "DOUBLE",
               "int32": "INT32", "int64": "INT64", "string": "STRING",
               "unix_timestamp": "UNIX_TIMESTAMP"}
# The pandas dtype a derived feature is cast to, so that Feast gets the type ml.yaml names.
# Integers are nullable (`Int64`): a missing input gives a missing output, not an error.
DERIVED_DTYPES = {"float32": "float32", "float64": "float64", "int32": "Int32",
                  "int64": "Int64"}
# Stream message schemas: Spark SQL types for JSON, Avro types for Avro.
_SPARK_TYPES = {"bool": "boolean", "bytes": "binary", "float32": "float", "float64": "double",
                "int32": "int", "int64": "bigint", "string": "string",
                "unix_timestamp": "timestamp"}
_AVRO_TYPES = {"bool": "boolean", "bytes": "bytes", "float32": "float", "float64": "double",
               "int32": "int", "int64": "long", "string": "string",
               "unix_timestamp": {"type": "long", "logicalType": "timestamp-micros"}}

# Where each source class comes from; the module imports only the ones it uses.
_SOURCE_CLASSES = {
    "file": ("feast", "FileSource"),
    "bigquery": ("feast", "BigQuerySource"),
    "snowflake": ("feast", "SnowflakeSource"),
    "redshift": ("feast", "RedshiftSource"),
    "postgres": ("feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source",
                 "PostgreSQLSource"),
    "spark": ("feast.infra.offline_stores.contrib.spark_offline_store.spark_source",
              "SparkSource"),
    "kafka": ("feast", "KafkaSource"),
    "push": ("feast", "PushSource"),
}
DATA_ROOT_MISSING = (f"set {DATA_ROOT_ENV} to the folder that relative paths in ml.yaml start "
                     "from (the project root)")


@dataclass
class _Module:
    """What the template prints, and the imports that it needs."""

    imports: dict[str, set[str]] = field(default_factory=dict)
    uses_data_root: bool = False
    entities: list[dict] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)
    views: list[dict] = field(default_factory=list)
    derived: list[dict] = field(default_factory=list)
    services: list[dict] = field(default_factory=list)

    def use(self, module: str, name: str) -> Code:
        self.imports.setdefault(module, set()).add(name)
        return identifier(name)


class _Variables:
    """Module-level names: `<kind>_<name>`, unique even where two user names map to one."""

    def __init__(self) -> None:
        self._taken: dict[str, tuple[str, str]] = {}
        self._given: dict[tuple[str, str], Code] = {}

    def __call__(self, kind: str, name: str) -> Code:
        key = (kind, name)
        if key not in self._given:
            var = python_identifier(f"{kind}_{name}")
            if var in self._taken or var in _RESERVED_NAMES:
                var = f"{var}_{short_hash(kind + ':' + name)}"
            self._taken[var] = key
            self._given[key] = identifier(var)
        return self._given[key]


# Names the module itself defines or imports; no Feast object variable may shadow them.
_RESERVED_NAMES = frozenset({"DATA_ROOT", "os", "pd", "timedelta"})


def render_definitions(project: ResolvedProject) -> str:
    module = build_module(project)
    context = {**vars(module), "imports": _sorted_imports(module.imports)}
    return _template().render(**context, data_root_env=DATA_ROOT_ENV,
                              data_root_missing=DATA_ROOT_MISSING)


def _sorted_imports(imports: dict[str, set[str]]) -> list[tuple[str, list[str]]]:
    """Modules sorted, names as isort orders them: CONSTANTS, Classes, then functions."""
    def rank(name: str) -> tuple[int, str]:
        kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
        return (kind, name)

    return [(m, sorted(imports[m], key=rank)) for m in sorted(imports)]


def build_module(project: ResolvedProject) -> _Module:
    module = _Module()
    var = _Variables()
    # Allocate in a fixed order (kind, then sorted name) so that a clash always resolves
    # the same way.
    for name in sorted(project.entities):
        var("entity", name)
    used_sources = _used_sources(project)
    for name in used_sources:
        var("source", name)
    for name in sorted(project.feature_views):
        var("view", name)
    for name in sorted(project.feature_views):
        if project.feature_views[name].derived:
            var("derived", name)
    for name in sorted(project.feature_services):
        var("service", name)

    module.use("feast", "Field")
    for name in sorted(project.entities):
        e = project.entities[name]
        module.use("feast", "Entity")
        module.use("feast", "ValueType")
        module.entities.append({"var": var("entity", name), "name": name,
                                "join_key": e.join_key, "value_type": VALUE_TYPES[e.type],
                                "description": e.description or "", "tags": e.tags})
    for name in used_sources:
        module.sources.append(_source(project, project.sources[name], module, var))
    derived_names = _derived_view_names(project)
    for name in sorted(project.feature_views):
        view = project.feature_views[name]
        module.views.append(_view(project, view, module, var))
        if view.derived:
            module.derived.append(_derived(view, derived_names[name], module, var))
    for name in sorted(project.feature_services):
        s = project.feature_services[name]
        module.use("feast", "FeatureService")
        module.services.append({"var": var("service", name), "name": name,
                                "description": s.description or "", "tags": s.tags,
                                "projections": _projections(s.features, var)})
    return module


def _used_sources(project: ResolvedProject) -> list[str]:
    """The sources that feature views read, batch sources before the streams that need them."""
    names = {v.source for v in project.feature_views.values()}
    names |= {project.sources[n].batch_source for n in names if project.sources[n].batch_source}
    return sorted(names, key=lambda n: (project.sources[n].batch_source is not None, n))


def _derived_view_names(project: ResolvedProject) -> dict[str, str]:
    """Feast names of the on-demand views: `<view>_derived`, hashed if a view has that name."""
    taken = set(project.feature_views)
    out = {}
    for name in sorted(project.feature_views):
        candidate = f"{name}_derived"
        out[name] = candidate if candidate not in taken else f"{candidate}_{short_hash(name)}"
    return out


def _field(module: _Module, name: str, type_: str, description: str | None = None,
           tags: dict[str, str] | None = None) -> dict:
    return {"name": name, "dtype": module.use("feast.types", FEAST_TYPES[type_]),
            "description": description or "", "tags": tags or {}}


def _view(project: ResolvedProject, view: FeatureView, module: _Module, var) -> dict:
    module.use("feast", "FeatureView")
    module.use("datetime", "timedelta")
    # Join keys are part of the schema, so Feast knows their types without reading data.
    keys = [_field(module, project.entities[e].join_key, project.entities[e].type)
            for e in view.entities]
    fields = [_field(module, f.name, f.type, f.description, f.tags) for f in view.fields]
    return {"var": var("view", view.name), "name": view.name,
            "entities": [var("entity", e) for e in view.entities],
            "ttl_seconds": view.ttl_seconds, "schema": keys + fields,
            "online": view.online, "source": var("source", view.source),
            "description": view.description or "", "owner": view.owner or "",
            "tags": view.tags}


def _derived(view: FeatureView, feast_name: str, module: _Module, var) -> dict:
    """An on-demand view computing the derived features from the view's own fields."""
    module.use("feast.on_demand_feature_view", "on_demand_feature_view")
    columns = {f.name: Code(f"inputs[{py_literal(f.name)}]") for f in view.fields}
    features = []
    for d in _dependency_order(view):
        expression = pandas_expression(d.expression, columns)
        dtype = DERIVED_DTYPES.get(d.type)
        features.append({"name": d.name, "expression": expression, "dtype": dtype})
        # later derived features may read this one, from the output frame
        columns[d.name] = Code(f"outputs[{py_literal(d.name)}]")
    return {"var": var("derived", view.name), "name": feast_name,
            "view": var("view", view.name),
            # Name and type only: Feast compares these fields with the ones it infers by
            # running the function, which carry no description (Feast 0.67).
            "schema": [_field(module, d.name, d.type) for d in view.derived],
            "features": features,
            # the fields cannot carry their descriptions (above), so the view does
            "description": "\n".join(
                [f"Derived features of {view.name}, computed at request time."]
                + [f"{d.name}: {d.description}" for d in view.derived if d.description]),
            "owner": view.owner or "", "tags": view.tags}


def _dependency_order(view: FeatureView):
    """Derived features with the ones they read first (resolve has refused cycles)."""
    by_name = {d.name: d for d in view.derived}
    done: dict[str, None] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in trail:
            raise ValueError(f"derived features of {view.name} form a cycle: {trail}")
        for dep in by_name[name].inputs:
            if dep in by_name:
                visit(dep, (*trail, name))
        done[name] = None

    for d in view.derived:
        visit(d.name, ())
    return [by_name[n] for n in done]


def _projections(features: list[FeatureRef], var) -> list[dict]:
    """A service's features grouped by the Feast view that serves them, in first-use order."""
    groups: dict[tuple[str, bool], list[str]] = {}
    for ref in features:
        groups.setdefault((ref.view, ref.derived), []).append(ref.field)
    return [{"view": var("derived" if derived else "view", view), "fields": fields}
            for (view, derived), fields in groups.items()]


# ---------------------------------------------------------------------------------------
# Sources: one Feast class per ml.yaml type, with that type's settings as keyword arguments.


def _source(project: ResolvedProject, s: Source, module: _Module, var) -> dict:
    module_name, cls = _SOURCE_CLASSES[s.type]
    o = s.options
    args: list[tuple[str, Code]] = [("name", py_literal(s.name))]
    if s.type != "push":
        args.append(("timestamp_field", py_literal(s.timestamp_field)))
        if s.created_timestamp_field:
            args.append(("created_timestamp_column", py_literal(s.created_timestamp_field)))
    if s.type == "file":
        args.append(("path", _path(o["path"], module)))
        args.append(("file_format", Code(module.use("feast.data_format", "ParquetFormat")
                                         + "()")))
        if o.get("endpoint_override"):
            args.append(("s3_endpoint_override", py_literal(o["endpoint_override"])))
    elif s.type in ("bigquery", "snowflake", "redshift", "postgres"):
        if s.type in ("snowflake", "redshift"):
            args += [("database", py_literal(o["database"])),
                     ("schema", py_literal(o["db_schema"]))]
        args += [(k, py_literal(o[k])) for k in ("table", "query") if o.get(k)]
    elif s.type == "spark":
        if o.get("table"):
            args.append(("table", py_literal(o["table"])))
        else:
            args += [("path", _path(o["path"], module)),
                     ("file_format", py_literal(o["file_format"]))]
    elif s.type == "kafka":
        args += [("kafka_bootstrap_servers", py_literal(o["bootstrap_servers"])),
                 ("topic", py_literal(o["topic"])),
                 ("message_format", _message_format(project, s, module)),
                 ("watermark_delay_threshold",
                  _timedelta(module, int(duration_seconds(o["watermark_delay"] or "0s"))))]
    if s.batch_source:
        args.append(("batch_source", var("source", s.batch_source)))
    args += [("description", py_literal(s.description or "")),
             ("owner", py_literal(s.owner or "")), ("tags", py_literal(s.tags))]
    return {"var": var("source", s.name), "callee": module.use(module_name, cls),
            "args": [(identifier(k), v) for k, v in args]}


def _path(path: str, module: _Module) -> Code:
    if not is_local_relative(path):
        return py_literal(path)
    module.uses_data_root = True
    return Code(f"os.path.join(DATA_ROOT, {py_literal(path.removeprefix('./'))})")


def _timedelta(module: _Module, seconds: int) -> Code:
    return Code(f"{module.use('datetime', 'timedelta')}(seconds={py_literal(seconds)})")


def _message_format(project: ResolvedProject, s: Source, module: _Module) -> Code:
    columns = _stream_columns(project, s)
    fmt = s.options.get("format") or "json"
    if fmt == "avro":
        schema = {"type": "record", "name": python_identifier(s.name),
                  "fields": [{"name": n, "type": ["null", _AVRO_TYPES[t]]} for n, t in columns]}
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        return Code(f"{module.use('feast.data_format', 'AvroFormat')}"
                    f"(schema_json={py_literal(text)})")
    if fmt != "json":
        # resolve refuses other formats for sources that feature views read
        raise ValueError(f"source {s.name}: Feast has no generated schema for {fmt} messages")
    text = ", ".join(f"{n} {_SPARK_TYPES[t]}" for n, t in columns)
    return Code(f"{module.use('feast.data_format', 'JsonFormat')}"
                f"(schema_json={py_literal(text)})")


def _stream_columns(project: ResolvedProject, s: Source) -> list[tuple[str, str]]:
    """The message's columns: as declared, or else what the views reading it need."""
    if s.columns:
        return [(c.name, c.type) for c in s.columns]
    out: dict[str, str] = {}
    for view in sorted(project.feature_views.values(), key=lambda v: v.name):
        if view.source == s.name:
            for e in view.entities:
                out.setdefault(project.entities[e].join_key, project.entities[e].type)
            for f in view.fields:
                out.setdefault(f.name, f.type)
    out.setdefault(s.timestamp_field, "unix_timestamp")
    return list(out.items())


# ---------------------------------------------------------------------------------------
# The template environment: it prints only `Code`.


def _only_code(value: object) -> object:
    if type(value) is not Code:
        raise TypeError(f"features.py.j2 printed {value!r} without `lit` or `name`")
    return value


def _names(values) -> Code:
    return Code(", ".join(identifier(v) for v in values))


def _dotted(value: str) -> Code:
    return Code(".".join(identifier(part) for part in value.split(".")))


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        autoescape=False,  # Python, not HTML: escaping is `lit`'s job
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_only_code,
    )
    env.filters.update(lit=py_literal, name=identifier, names=_names, dotted=_dotted)
    text = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    return env.from_string(text)
