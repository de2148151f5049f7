"""The Feast backend without Feast: what it writes, and that no user string becomes code.

`features.py` is checked with `ast`: it must contain only the imports, calls and statements
that a Feast repository needs, and every hostile string fed in through ml.yaml must come
back out as a string constant, unchanged. tests/test_feast_real.py runs the output in Feast.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlc.compiler.backends import feast as feast_backend
from mlc.compiler.backends.feast.definitions import _template
from mlc.compiler.backends.feast.expressions import UnsafeExpression, pandas_expression
from mlc.compiler.backends.feast.literals import Code, identifier, is_identifier, py_literal
from mlc.compiler.backends.feast.store_config import store_config
from mlc.compiler.backends.kustomize import is_manifest
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.emit import emit
from mlc.compiler.ir import ResolvedProject
from mlc.compiler.pipeline import check_environment
from mlc.compiler.render import render

from .conftest import ROOT, write_project

HOSTILE = [
    '"""', "'''", "'", '"', "\\", "\\'", "\n", "\r\n", "\t", "\x00", "\u2028",
    "__import__('os').system('x')", "'); __import__('os').system('x'); ('",
    '"""); import os; os.system("x"); ("""', "{{ 7 * 7 }}", "{% raw %}", "{# c #}", "{{",
    "# comment", "${HOME}", "é ü 😀 中文", "\\N{BULLET}", "x\\", "end'",
]
ALL_HOSTILE = "".join(HOSTILE)


def _project(**overrides) -> dict:
    """A small valid project as data: two entities, two views (one derived), a service."""
    base = {
        "apiVersion": "mlc.dev/v1",
        "kind": "Project",
        "metadata": {"name": "shop"},
        "platform": {"imagePolicy": "tag"},
        "sources": {
            "user_daily": {"type": "file", "path": "data/user_daily.parquet", "columns": [
                {"name": "user_id", "type": "int64"},
                {"name": "event_timestamp", "type": "unix_timestamp"},
                {"name": "clicks", "type": "int64"},
                {"name": "spend", "type": "float64"}]},
            "item_daily": {"type": "file", "path": "s3://bucket/item_daily.parquet",
                           "columns": [
                               {"name": "item_id", "type": "string"},
                               {"name": "event_timestamp", "type": "unix_timestamp"},
                               {"name": "price", "type": "float64"},
                               {"name": "views", "type": "int64"}]},
        },
        "entities": {"user": {"joinKey": "user_id"},
                     "item": {"joinKey": "item_id", "type": "string"}},
        "features": {
            "user_stats": {"entities": ["user"], "source": "user_daily", "ttl": "3d",
                           "fields": [{"name": "clicks", "type": "int64"},
                                      {"name": "spend", "type": "float64"}]},
            "item_stats": {"entities": ["item"], "source": "item_daily", "ttl": "10d",
                           "online": False,
                           "fields": [{"name": "price", "type": "float64"},
                                      {"name": "views", "type": "int64"}],
                           "derived": [
                               {"name": "double_ppv", "expression": "price_per_view * 2"},
                               {"name": "price_per_view", "expression": "price / (views + 1)"},
                               {"name": "views_plus", "type": "int64",
                                "expression": "-views + 2 * views + 1"}]},
        },
        "featureServices": {"ranker_inputs": {"features": ["user_stats", "item_stats"]}},
    }
    base.update(overrides)
    return base


def _resolve(tmp_path: Path, data: dict, env: str = "default",
             overlay: dict | None = None) -> tuple[ResolvedProject | None, Diagnostics]:
    # JSON is YAML 1.2; non-ASCII stays literal, since the loader reads an escaped surrogate
    # pair as two lone surrogates
    files = {"ml.yaml": json.dumps(data, indent=1, ensure_ascii=False)}
    if overlay is not None:
        files[f"environments/{env}.yaml"] = json.dumps(overlay, ensure_ascii=False)
    root = write_project(tmp_path / "project", files)
    diags = Diagnostics()
    return check_environment(root, env, diags), diags


def _ok(tmp_path: Path, data: dict, **kwargs) -> ResolvedProject:
    project, diags = _resolve(tmp_path, data, **kwargs)
    assert project is not None, [f"{d.code} {d.message}" for d in diags.errors]
    return project


def _files(project: ResolvedProject) -> dict[str, bytes]:
    return render(feast_backend.emit(project))


def _module_text(project: ResolvedProject) -> str:
    return _files(project)["feast/features.py"].decode("utf-8")


def _store_yaml(project: ResolvedProject) -> dict:
    return yaml.safe_load(_files(project)["feast/feature_store.yaml"])


# ---------------------------------------------------------------------------------------
# What a generated module may contain


FEAST_IMPORTS = {
    "feast": {"Entity", "FeatureService", "FeatureView", "Field", "FileSource", "ValueType",
              "BigQuerySource", "SnowflakeSource", "RedshiftSource", "KafkaSource",
              "PushSource"},
    "feast.data_format": {"ParquetFormat", "JsonFormat", "AvroFormat"},
    "feast.types": {"Bool", "Bytes", "Float32", "Float64", "Int32", "Int64", "String",
                    "UnixTimestamp"},
    "feast.on_demand_feature_view": {"on_demand_feature_view"},
    "feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source":
        {"PostgreSQLSource"},
    "feast.infra.offline_stores.contrib.spark_offline_store.spark_source": {"SparkSource"},
    "datetime": {"timedelta"},
}
# Callables a top-level assignment may call; attribute calls allowed anywhere.
FEAST_CONSTRUCTORS = {"Entity", "FeatureService", "FeatureView", "FileSource", "BigQuerySource",
                      "SnowflakeSource", "RedshiftSource", "KafkaSource", "PushSource",
                      "PostgreSQLSource", "SparkSource"}
NESTED_CALLS = {"Field", "timedelta", "ParquetFormat", "JsonFormat", "AvroFormat",
                "on_demand_feature_view", "RuntimeError"}
ATTRIBUTE_CALLS = {("os", "environ", "get"), ("os", "path", "join"), ("pd", "DataFrame"),
                   ("astype",)}
VARIABLE = re.compile(r"(entity|source|view|derived|service)_[a-z0-9_]+")


def _dotted(node: ast.AST) -> tuple[str, ...]:
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return (*inner, node.attr) if inner else (node.attr,)
    return ()


def check_module(text: str) -> list[str]:
    """Parse a generated module, assert that it holds nothing but Feast definitions, and
    return every string constant in it."""
    compile(text, "features.py", "exec")
    tree = ast.parse(text)
    body = list(tree.body)
    assert isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    defined: set[str] = set()
    for stmt in body[1:]:
        if isinstance(stmt, ast.Import):
            assert [(a.name, a.asname) for a in stmt.names] in ([("os", None)],
                                                                 [("pandas", "pd")])
        elif isinstance(stmt, ast.ImportFrom):
            assert stmt.level == 0 and stmt.module in FEAST_IMPORTS, ast.dump(stmt)
            for alias in stmt.names:
                assert alias.asname is None and alias.name in FEAST_IMPORTS[stmt.module]
        elif isinstance(stmt, ast.Assign):
            (target,) = stmt.targets
            assert isinstance(target, ast.Name)
            if target.id == "DATA_ROOT":
                assert _dotted(stmt.value.func) == ("os", "environ", "get")
            else:
                assert VARIABLE.fullmatch(target.id), target.id
                assert isinstance(stmt.value, ast.Call)
                assert _dotted(stmt.value.func)[0] in FEAST_CONSTRUCTORS
                assert not stmt.value.args, "Feast objects are built from keywords only"
            defined.add(target.id)
        elif isinstance(stmt, ast.If):
            assert ast.unparse(stmt.test) == "not DATA_ROOT"
            (raise_,) = stmt.body
            assert isinstance(raise_, ast.Raise) and not stmt.orelse
        elif isinstance(stmt, ast.FunctionDef):
            (decorator,) = stmt.decorator_list
            assert _dotted(decorator.func) == ("on_demand_feature_view",)
            assert VARIABLE.fullmatch(stmt.name) and stmt.name.startswith("derived_")
            assert [a.arg for a in stmt.args.args] == ["inputs"]
            first, *middle, last = stmt.body
            assert ast.unparse(first) == "outputs = pd.DataFrame(index=inputs.index)"
            assert ast.unparse(last) == "return outputs"
            for line in middle:
                assert isinstance(line, ast.Assign)
                (target,) = line.targets
                assert isinstance(target, ast.Subscript) and _dotted(target.value) == (
                    "outputs",)
            defined.add(stmt.name)
        else:
            raise AssertionError(f"unexpected statement: {ast.dump(stmt)[:200]}")

    imported = {a.asname or a.name for s in body if isinstance(s, (ast.Import, ast.ImportFrom))
                for a in s.names}
    names_ok = imported | defined | {"pd", "os", "inputs", "outputs", "RuntimeError"}
    strings = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            assert node.id in names_ok, f"unexpected name {node.id!r}"
        elif isinstance(node, ast.Call):
            dotted = _dotted(node.func)
            allowed = (dotted[0] in FEAST_CONSTRUCTORS | NESTED_CALLS and len(dotted) == 1
                       or dotted in ATTRIBUTE_CALLS or dotted[-1:] == ("astype",))
            assert allowed, f"unexpected call {ast.unparse(node.func)}"
        elif isinstance(node, ast.Subscript):
            # column lookups in derived features, projections of views in services
            assert isinstance(node.slice, (ast.Constant, ast.List)), ast.unparse(node)
            if isinstance(node.slice, ast.List):
                assert all(isinstance(e, ast.Constant) for e in node.slice.elts)
        elif isinstance(node, (ast.Lambda, ast.comprehension, ast.NamedExpr, ast.Await,
                               ast.Yield, ast.YieldFrom, ast.Global, ast.Nonlocal,
                               ast.ClassDef, ast.With, ast.For, ast.While, ast.Try,
                               ast.Delete, ast.JoinedStr)):
            raise AssertionError(f"unexpected {type(node).__name__}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.append(node.value)
    return strings


# ---------------------------------------------------------------------------------------
# The bundled example


@pytest.fixture(scope="module")
def example() -> dict[str, ResolvedProject]:
    out = {}
    for env in ("dev", "staging", "prod"):
        diags = Diagnostics()
        project = check_environment(ROOT, env, diags)
        assert project is not None, [d.message for d in diags.errors]
        out[env] = project
    return out


def test_every_environment_gets_a_repository(example):
    for env, project in example.items():
        files = _files(project)
        assert sorted(files) == ["feast/feature_store.yaml", "feast/features.py",
                                 "feast/repo-configmap.yaml"], env
        strings = check_module(files["feast/features.py"].decode())
        assert "Everything the fraud model reads." in strings
        config = yaml.safe_load(files["feast/feature_store.yaml"])
        assert config["project"] == f"fraud_detection_{env}"
        assert config["entity_key_serialization_version"] == 3
        assert config["offline_store"] == {"type": "file"}


def test_store_config_per_environment(example):
    dev = _store_yaml(example["dev"])
    assert dev["online_store"] == {"type": "sqlite",
                                   "path": "${MLC_DATA_ROOT}/data/online_store.db"}
    assert dev["registry"] == {"registry_type": "file", "path": "${MLC_DATA_ROOT}/data/registry.db"}
    for env in ("staging", "prod"):
        config = _store_yaml(example[env])
        assert config["online_store"] == {"type": "redis",
                                          "connection_string": "${MLC_ONLINE_STORE_CONNECTION}"}
        assert config["registry"] == {"registry_type": "file",
                                      "path": f"s3://fraud-ml-feast/{env}/registry.db"}


def test_store_variables_are_the_ones_the_steps_receive(example):
    """Every `${VAR}` in feature_store.yaml is the data root or a secret that each step that
    runs Feast gets; no credential is written out."""
    for env, project in example.items():
        text = _files(project)["feast/feature_store.yaml"].decode()
        variables = set(re.findall(r"\$\{([A-Z_]+)\}", text))
        assert "$" not in re.sub(r"\$\{[A-Z_]+\}", "", text), env
        steps = [s for p in project.pipelines.values() for s in p.steps
                 if s.kind in ("feature_apply", "materialize")]
        assert steps, env
        for step in steps:
            assert variables - {feast_backend.DATA_ROOT_ENV} <= set(step.secrets), (env, step.name)


def test_config_map_holds_the_files_byte_for_byte(example):
    project = example["prod"]
    files = _files(project)
    config_map = yaml.safe_load(files["feast/repo-configmap.yaml"])
    assert config_map["kind"] == "ConfigMap"
    assert config_map["metadata"]["name"] == feast_backend.repo_config_map_name(project)
    assert config_map["metadata"]["namespace"] == "fraud-prod"
    assert config_map["data"] == {"feature_store.yaml": files["feast/feature_store.yaml"].decode(),
                                  "features.py": files["feast/features.py"].decode()}
    for key in config_map["data"]:
        assert re.fullmatch(r"[-._a-zA-Z0-9]+", key)


def test_only_the_config_map_is_a_kubernetes_object(example):
    emitted = emit(example["dev"])
    feast_files = {f.path: f for f in emitted if f.path.startswith("feast/")}
    assert {p for p, f in feast_files.items() if is_manifest(f)} == {"feast/repo-configmap.yaml"}
    kustomization = next(f for f in emitted if f.path == "kustomization.yaml")
    assert "feast/repo-configmap.yaml" in kustomization.content["resources"]
    assert "feast/feature_store.yaml" not in kustomization.content["resources"]


def test_output_is_deterministic(example):
    for project in example.values():
        assert _files(project) == _files(project.model_copy(deep=True))


# ---------------------------------------------------------------------------------------
# What features.py says


def test_definitions_of_a_small_project(tmp_path):
    text = _module_text(_ok(tmp_path, _project()))
    tree = ast.parse(text)
    calls = {ast.unparse(s.targets[0]): s.value for s in tree.body if isinstance(s, ast.Assign)}

    def keywords(var: str) -> dict[str, str]:
        return {k.arg: ast.unparse(k.value) for k in calls[var].keywords}

    assert keywords("entity_item")["value_type"] == "ValueType.STRING"
    assert keywords("entity_item")["join_keys"] == "['item_id']"
    user_source = keywords("source_user_daily")
    assert user_source["path"] == "os.path.join(DATA_ROOT, 'data/user_daily.parquet')"
    assert user_source["file_format"] == "ParquetFormat()"
    # a URI is not under the data root
    assert keywords("source_item_daily")["path"] == "'s3://bucket/item_daily.parquet'"
    view = keywords("view_item_stats")
    assert view["ttl"] == "timedelta(seconds=864000)"
    assert view["online"] == "False"
    assert view["entities"] == "[entity_item]"
    assert view["source"] == "source_item_daily"
    assert "Field(name='item_id', dtype=String" in view["schema"]
    assert "Field(name='views', dtype=Int64" in view["schema"]
    service = keywords("service_ranker_inputs")
    assert service["features"] == (
        "[view_user_stats[['clicks', 'spend']], view_item_stats[['price', 'views']], "
        "derived_item_stats[['double_ppv', 'price_per_view', 'views_plus']]]")

    (function,) = [s for s in tree.body if isinstance(s, ast.FunctionDef)]
    decorator = {k.arg: ast.unparse(k.value) for k in function.decorator_list[0].keywords}
    assert decorator["name"] == "'item_stats_derived'"
    assert decorator["sources"] == "[view_item_stats]"
    assert decorator["mode"] == "'pandas'"
    lines = [ast.unparse(s) for s in function.body]
    # price_per_view is computed before double_ppv, which reads it from the output frame
    assert lines[1:4] == [
        "outputs['price_per_view'] = (inputs['price'] / (inputs['views'] + 1)).astype('float64')",
        "outputs['double_ppv'] = (outputs['price_per_view'] * 2).astype('float64')",
        "outputs['views_plus'] = (-inputs['views'] + 2 * inputs['views'] + 1).astype('Int64')",
    ]
    check_module(text)


def test_stream_sources(tmp_path):
    data = _project()
    data["sources"].update({
        "clicks_json": {"type": "kafka", "bootstrapServers": "broker:9092", "topic": "clicks",
                        "batchSource": "user_daily", "watermarkDelay": "1m"},
        "clicks_avro": {"type": "kafka", "bootstrapServers": "broker:9092", "topic": "avro",
                        "format": "avro", "batchSource": "user_daily",
                        "columns": [{"name": "user_id", "type": "int64"},
                                    {"name": "event_timestamp", "type": "unix_timestamp"},
                                    {"name": "clicks", "type": "int64"}]},
        "clicks_push": {"type": "push", "batchSource": "user_daily"},
    })
    for source in ("clicks_json", "clicks_avro", "clicks_push"):
        data["features"][f"by_{source}"] = {"entities": ["user"], "source": source,
                                            "fields": [{"name": "clicks", "type": "int64"}]}
    # the ingestion decodes JSON only (MLC571): an Avro topic feeds offline views alone
    data["features"]["by_clicks_avro"]["online"] = False
    text = _module_text(_ok(tmp_path, data))
    check_module(text)
    tree = ast.parse(text)
    order = [ast.unparse(s.targets[0]) for s in tree.body if isinstance(s, ast.Assign)
             and ast.unparse(s.targets[0]).startswith("source_")]
    # batch sources first: the streams refer to them
    assert order.index("source_user_daily") < order.index("source_clicks_json")
    kw = {ast.unparse(s.targets[0]): {k.arg: k.value for k in s.value.keywords}
          for s in tree.body if isinstance(s, ast.Assign)}
    json_source = kw["source_clicks_json"]
    assert ast.unparse(json_source["message_format"]) == (
        "JsonFormat(schema_json='user_id bigint, clicks bigint, event_timestamp timestamp')")
    assert ast.unparse(json_source["watermark_delay_threshold"]) == "timedelta(seconds=60)"
    assert ast.unparse(json_source["batch_source"]) == "source_user_daily"
    avro = json.loads(kw["source_clicks_avro"]["message_format"].keywords[0].value.value)
    assert avro["type"] == "record"
    assert [f["name"] for f in avro["fields"]] == ["user_id", "event_timestamp", "clicks"]
    assert ast.unparse(kw["source_clicks_push"]["batch_source"]) == "source_user_daily"
    assert "timestamp_field" not in kw["source_clicks_push"]


WAREHOUSES = {
    "bigquery": ({"table": "proj.dataset.users"}, {"project_id": "proj", "dataset": "feast"}),
    "snowflake": ({"database": "DB", "schema": "S", "table": "USERS"},
                  {"account": "acme", "user": "feast", "database": "DB", "warehouse": "W"}),
    "redshift": ({"database": "db", "query": "SELECT * FROM users"},
                 {"cluster_id": "c", "region": "eu-west-1", "database": "db", "user": "u",
                  "s3_staging_location": "s3://b/stage", "iam_role": "arn:aws:iam::1:role/r"}),
    "postgres": ({"table": "users"}, {"host": "pg", "database": "db", "user": "u"}),
    "spark": ({"path": "data/users.parquet"}, {"spark_conf": {"spark.master": "local[1]"}}),
}


@pytest.mark.parametrize("kind", sorted(WAREHOUSES))
def test_warehouse_sources_and_offline_stores(tmp_path, kind):
    settings_, options = WAREHOUSES[kind]
    data = _project()
    del data["sources"]["item_daily"], data["features"]["item_stats"], data["entities"]["item"]
    data["featureServices"] = {"ranker_inputs": {"features": ["user_stats"]}}
    columns = data["sources"]["user_daily"]["columns"]
    data["sources"]["user_daily"] = {"type": kind, "columns": columns, "owner": "data@x",
                                     **settings_}
    secrets = {"store": {"kubernetes": {"name": "store", "key": "password"}}}
    data["secrets"] = secrets
    data["platform"]["featureStore"] = {"offlineStore": {"type": kind, "options": options,
                                                         "connectionSecret": "store"}}
    project = _ok(tmp_path, data)
    text = _module_text(project)
    check_module(text)
    source = next(s.value for s in ast.parse(text).body if isinstance(s, ast.Assign)
                  and ast.unparse(s.targets[0]) == "source_user_daily")
    keywords = {k.arg: ast.literal_eval(k.value) for k in source.keywords
                if isinstance(k.value, ast.Constant)}
    assert keywords["name"] == "user_daily" and keywords["owner"] == "data@x"
    for key, value in settings_.items():
        if key != "path":
            assert keywords[key] == value
    config = _store_yaml(project)["offline_store"]
    feast_type = {"snowflake": "snowflake.offline"}.get(kind, kind)
    assert config["type"] == feast_type
    assert {k: v for k, v in config.items() if k in options} == options
    if kind in ("snowflake", "postgres"):
        assert config["password"] == "${MLC_OFFLINE_STORE_CONNECTION}"
    else:
        assert not any("${" in str(v) for v in config.values())


@pytest.mark.parametrize(("store", "expected"), [
    ({"type": "sqlite", "path": "/var/lib/feast/online.db"},
     {"type": "sqlite", "path": "/var/lib/feast/online.db"}),
    ({"type": "redis", "options": {"key_ttl_seconds": 3600}},
     {"type": "redis", "key_ttl_seconds": 3600}),
    ({"type": "postgres", "connectionSecret": "store", "options": {"host": "pg", "port": 5432}},
     {"type": "postgres", "host": "pg", "port": 5432,
      "password": "${MLC_ONLINE_STORE_CONNECTION}"}),
    ({"type": "dynamodb", "options": {"region": "eu-west-1"}},
     {"type": "dynamodb", "region": "eu-west-1"}),
    ({"type": "snowflake", "connectionSecret": "store", "options": {"database": "DB"}},
     {"type": "snowflake.online", "database": "DB",
      "password": "${MLC_ONLINE_STORE_CONNECTION}"}),
])
def test_online_stores(tmp_path, store, expected):
    data = _project()
    data["secrets"] = {"store": {"kubernetes": {"name": "store", "key": "url"}}}
    data["platform"]["featureStore"] = {"onlineStore": store,
                                        "registry": "postgresql://db.internal/feast"}
    config = _store_yaml(_ok(tmp_path, data))
    assert config["online_store"] == expected
    assert config["registry"] == {"registry_type": "sql", "path": "postgresql://db.internal/feast"}


# ---------------------------------------------------------------------------------------
# Hostile strings: they stay strings


def _hostile_project() -> dict:
    data = _project()
    tags = {h or "empty": h for h in HOSTILE} | {ALL_HOSTILE: ALL_HOSTILE}
    for source in data["sources"].values():
        source.update(description=ALL_HOSTILE, owner=ALL_HOSTILE, tags=tags)
    data["sources"]["user_daily"]["path"] = "data/" + ALL_HOSTILE.replace("\x00", "") + ".pq"
    for entity in data["entities"].values():
        entity.update(description=ALL_HOSTILE, tags=tags)
    for view in data["features"].values():
        view.update(description=ALL_HOSTILE, owner=ALL_HOSTILE, tags=tags)
        for f in view["fields"]:
            f.update(description=ALL_HOSTILE, tags=tags)
        for d in view.get("derived", []):
            d["description"] = ALL_HOSTILE
    data["featureServices"]["ranker_inputs"].update(description=ALL_HOSTILE, tags=tags)
    data["sources"]["clicks"] = {"type": "kafka", "bootstrapServers": ALL_HOSTILE,
                                 "topic": "clicks", "batchSource": "user_daily",
                                 "description": ALL_HOSTILE}
    # offline: an online view's topic is consumed, and its brokers must be `host:port` (MLC573)
    data["features"]["by_clicks"] = {"entities": ["user"], "source": "clicks",
                                     "fields": [{"name": "clicks", "type": "int64"}],
                                     "description": ALL_HOSTILE, "online": False}
    return data


def test_hostile_strings_stay_strings(tmp_path):
    project = _ok(tmp_path, _hostile_project())
    files = _files(project)
    text = files["feast/features.py"].decode("utf-8")
    strings = check_module(text)
    for hostile in [*HOSTILE, ALL_HOSTILE]:
        assert hostile in strings, f"{hostile!r} did not come back as a string constant"
    assert "data/" + ALL_HOSTILE.replace("\x00", "") + ".pq" in strings
    # and the ConfigMap carries the module unchanged through YAML
    config_map = yaml.safe_load(files["feast/repo-configmap.yaml"])
    assert config_map["data"]["features.py"] == text


@pytest.mark.parametrize("kind", ["bigquery", "snowflake", "redshift", "postgres"])
def test_hostile_queries_stay_strings(tmp_path, kind):
    data = _project()
    del data["sources"]["item_daily"], data["features"]["item_stats"], data["entities"]["item"]
    data["featureServices"] = {"ranker_inputs": {"features": ["user_stats"]}}
    extra = {"database": "DB"} if kind in ("snowflake", "redshift") else {}
    data["sources"]["user_daily"] = {"type": kind, "query": ALL_HOSTILE, **extra,
                                     "columns": data["sources"]["user_daily"]["columns"]}
    data["platform"]["featureStore"] = {"offlineStore": {"type": kind}}
    strings = check_module(_module_text(_ok(tmp_path, data)))
    assert ALL_HOSTILE in strings


def test_hostile_expressions_never_reach_the_module(tmp_path):
    """Resolve refuses them; and if one got past resolve, the backend refuses it too."""
    project = _ok(tmp_path, _project())
    view = project.feature_views["item_stats"]
    for expression in ["__import__('os').system('x')", "price.__class__", "price[0]",
                       "(lambda: 1)()", "price if views else 1", "'a' * 3", "price ** 2",
                       "price // 2", "price % 2", "True + price", "1e999 * price",
                       "unknown + 1", "price; import os", "(x := price)", "{'a': 1}",
                       "[price]", "price < 2", "not price", "f'{price}'", "..."]:
        bad = view.derived[0].model_copy(update={"expression": expression})
        broken = project.model_copy(update={"feature_views": {
            **project.feature_views,
            "item_stats": view.model_copy(update={"derived": [bad, *view.derived[1:]]})}})
        with pytest.raises(UnsafeExpression):
            feast_backend.emit(broken)


def test_resolve_refuses_an_infinite_constant(tmp_path):
    data = _project()
    data["features"]["item_stats"]["derived"][0]["expression"] = "1e999 * price"
    project, diags = _resolve(tmp_path, data)
    assert project is None
    assert [d.code for d in diags.errors] == ["MLC206"]


def test_the_template_prints_nothing_unfiltered():
    env = _template().environment
    with pytest.raises(TypeError, match="without `lit` or `name`"):
        env.from_string("{{ value }}").render(value="'); import os; ('")
    assert env.from_string("{{ value|lit }}").render(value="'); import os; ('") == \
        "\"'); import os; ('\""
    with pytest.raises(ValueError):
        env.from_string("{{ value|name }}").render(value="os.system")


# ---------------------------------------------------------------------------------------
# The pieces: literals and expressions


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12))
@settings(max_examples=120, deadline=None)
def test_literals_read_back_as_the_same_value(value):
    assert ast.literal_eval(py_literal(value)) == value


def test_literals_ignore_a_subclass_repr():
    class Evil(str):
        def __repr__(self):
            return "__import__('os')"

    assert py_literal(Evil("x")) == "'x'"
    with pytest.raises(ValueError):
        py_literal(float("nan"))
    with pytest.raises(TypeError):
        py_literal(object())
    with pytest.raises(TypeError):
        py_literal({1: "a"})


@pytest.mark.parametrize("text", ["", "class", "None", "a b", "a.b", "1a", "é", "a-b",
                                  "x;y", "__import__('os')", None, 3])
def test_identifiers_are_checked(text):
    assert not is_identifier(text)
    with pytest.raises(ValueError):
        identifier(text)


def test_identifiers_pass_unchanged():
    assert identifier("view_user_stats") == "view_user_stats"
    assert type(identifier("match")) is Code  # a soft keyword is a valid name


_NAMES = ["a", "b", "c"]


def _expressions():
    leaf = st.sampled_from(_NAMES) | st.integers(0, 50).map(str) | st.sampled_from(
        ["0.5", "2.25", "1e3"])
    return st.recursive(leaf, lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda e: f"-{e}")), max_leaves=10)


@given(_expressions(), st.lists(st.floats(0.5, 100), min_size=3, max_size=3))
@settings(max_examples=120, deadline=None)
def test_generated_expressions_compute_what_ml_yaml_says(expression, values):
    env = dict(zip(_NAMES, values, strict=True))
    try:
        # the oracle: Python itself, on expressions this test generated
        expected = eval(expression, {"__builtins__": {}}, dict(env))
    except ZeroDivisionError:
        assume(False)
    columns = {n: Code(f"inputs[{py_literal(n)}]") for n in _NAMES}
    code = pandas_expression(expression, columns)
    got = eval(code, {"__builtins__": {}}, {"inputs": env})
    assert got == expected
    tree = ast.parse(code, mode="eval")
    assert {type(n) for n in ast.walk(tree)} <= {
        ast.Expression, ast.BinOp, ast.UnaryOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub,
        ast.UAdd, ast.Subscript, ast.Name, ast.Load, ast.Constant}


# ---------------------------------------------------------------------------------------
# What resolve refuses, because feature_store.yaml or Feast could not take it


@pytest.mark.parametrize(("store", "code"), [
    ({"onlineStore": {"type": "redis", "options": {"connection_string": "redis:6379"}}},
     "MLC110"),
    ({"onlineStore": {"type": "redis", "options": {"type": "x"}}}, "MLC210"),
    ({"onlineStore": {"type": "redis", "options": {"Key-TTL": 1}}}, "MLC210"),
    ({"onlineStore": {"type": "redis", "options": {"key_ttl_seconds": "${TTL}"}}}, "MLC210"),
    ({"offlineStore": {"type": "spark", "options": {"spark_conf": {"a": "$HOME"}}}}, "MLC210"),
    ({"registry": "s3://bucket/$USER/registry.db"}, "MLC210"),
    ({"onlineStore": {"type": "sqlite", "path": "$HOME/online.db"}}, "MLC210"),
])
def test_store_settings_that_resolve_refuses(tmp_path, store, code):
    data = _project()
    data["platform"]["featureStore"] = store
    project, diags = _resolve(tmp_path, data)
    assert project is None
    assert code in {d.code for d in diags.errors}


def test_what_feast_cannot_serve(tmp_path):
    cases = []
    data = _project()
    data["features"]["user-stats"] = data["features"].pop("user_stats")
    data["featureServices"] = {"s": {"features": ["user-stats"]}}
    cases.append((data, "MLC210", "SQLite online store"))
    data = _project()
    data["sources"]["user_daily"]["format"] = "csv"
    cases.append((data, "MLC208", "Parquet files only"))
    data = _project()
    data["platform"]["featureStore"] = {"offlineStore": {"type": "bigquery"}}
    cases.append((data, "MLC208", "offline store is bigquery"))
    data = _project()
    data["sources"]["proto"] = {"type": "kafka", "bootstrapServers": "b:9092", "topic": "t",
                                "format": "protobuf", "batchSource": "user_daily"}
    data["features"]["by_proto"] = {"entities": ["user"], "source": "proto",
                                    "fields": [{"name": "clicks", "type": "int64"}]}
    cases.append((data, "MLC208", "protobuf"))
    for index, (data, code, words) in enumerate(cases):
        project, diags = _resolve(tmp_path / str(index), data)
        assert project is None
        assert any(d.code == code and words in d.message for d in diags.errors), [
            d.message for d in diags.errors]
    # redis has no such limit on names
    data = cases[0][0]
    data["platform"]["featureStore"] = {"onlineStore": {"type": "redis"}}
    _ok(tmp_path / "redis", data)


def test_store_config_of_the_ir_directly(example):
    """store_config is a pure function of the IR: no defaults picked here."""
    project = example["dev"]
    platform = project.platform.model_copy(update={"feast_provider": "aws",
                                                   "feast_registry": "gs://b/registry.db"})
    config = store_config(project.model_copy(update={"platform": platform}))
    assert config["provider"] == "aws"
    assert config["registry"] == {"registry_type": "file", "path": "gs://b/registry.db"}
