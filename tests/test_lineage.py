"""OpenLineage events of the pipeline steps, sent by the real openlineage-python client.

Steps of the example run with `platform.lineage` set to the file transport and to the HTTP
transport (a local server that records what it is sent, as Marquez would receive it); every
event is validated against the OpenLineage JSON schemas vendored in tests/schemas/openlineage
(see its README). Without `platform.lineage` the steps import no client at all.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment, compile_project
from mlc.runtime.step import StepFailed, build_context, run_step

from .conftest import ROOT

pytest.importorskip("openlineage.client")

SCHEMAS = Path(__file__).parent / "schemas" / "openlineage"
PIPELINE = "train-fraud-classifier"
# facet key -> its schema, per place (the client adds its own `tags` and engine facets)
RUN_FACETS = {"parent": "ParentRunFacet", "errorMessage": "ErrorMessageRunFacet",
              "tags": "TagsRunFacet", "processing_engine": "ProcessingEngineRunFacet"}
JOB_FACETS = {"jobType": "JobTypeJobFacet", "tags": "TagsJobFacet"}
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
CUSTOM_FACETS = {"producedBy"}  # mlc/runtime/lineage.py: the dataset's producing job
DATASET_FACETS = {"schema": "SchemaDatasetFacet", "documentation": "DocumentationDatasetFacet",
                  "version": "DatasetVersionDatasetFacet"}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return schema_registry()


def schema_registry() -> Registry:
    """The vendored schemas by their `$id`, so that their `$ref`s resolve with no network."""
    resources = []
    for path in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def check_event(event: dict, registry: Registry) -> None:
    """The event against OpenLineage.json, and every facet against its own schema."""
    def validate(instance, name: str) -> None:
        schema = json.loads((SCHEMAS / f"{name}.json").read_text())
        jsonschema.Draft202012Validator(schema, registry=registry,
                                        format_checker=jsonschema.FormatChecker()
                                        ).validate(instance)

    validate(event, "OpenLineage")
    facets = [(RUN_FACETS, k, f) for k, f in event["run"].get("facets", {}).items()]
    facets += [(JOB_FACETS, k, f) for k, f in event["job"].get("facets", {}).items()]
    for dataset in event.get("inputs", []) + event.get("outputs", []):
        facets += [(DATASET_FACETS, k, f) for k, f in dataset.get("facets", {}).items()]
    for known, key, facet in facets:
        if key in CUSTOM_FACETS:  # mlc's own: a custom facet as the core schema defines it
            jsonschema.Draft202012Validator(
                {"$ref": f"{CORE}#/$defs/DatasetFacet"}, registry=registry,
                format_checker=jsonschema.FormatChecker()).validate(facet)
        else:
            validate({key: facet}, known[key])  # a facet without a vendored schema: KeyError
        assert facet["_schemaURL"] and facet["_producer"]


def without_suites(project):
    """mlc's own data checks only: GX (tests/test_data_expectations.py) is not what is under
    test here, and it takes seconds to import."""
    return project.model_copy(update={"sources": {
        n: s.model_copy(update={"expectations": []}) for n, s in project.sources.items()}})


def lineage_project(lineage: dict):
    """The example (dev) with `platform.lineage` as resolve would make it."""
    from mlc.compiler import ir

    project = check_environment(ROOT, "dev", Diagnostics())
    assert project is not None
    platform = project.platform.model_copy(update={"lineage": ir.Lineage(**lineage)})
    return without_suites(project.model_copy(update={"platform": platform}))


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "data", tmp_path / "data",
                    ignore=shutil.ignore_patterns("*.py", "*.db", "__pycache__"))
    return tmp_path


def run(project, step: str, data_root: Path, run_dir: Path, run_id: str = "wf-1"):
    ctx = build_context(project, PIPELINE, step, environ={
        "MLC_DATA_ROOT": str(data_root), "MLC_RUN_DIR": str(run_dir), "MLC_RUN_ID": run_id})
    run_step(ctx)


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_file_transport_start_complete_and_fail_validate(tmp_path, data_root, registry):
    project = lineage_project({"transport": "file", "namespace": "mlc.fraud",
                                         "path": "lineage/events.jsonl"})
    run_dir = tmp_path / "run"
    run(project, "validate-data", data_root, run_dir)
    events = read_events(run_dir / "lineage" / "events.jsonl")
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        check_event(event, registry)
    start = events[0]
    assert start["job"] == {"namespace": "mlc.fraud", "name": f"{PIPELINE}.validate-data",
                            "facets": start["job"]["facets"]}
    assert start["job"]["facets"]["jobType"]["integration"] == "MLC"
    parent = start["run"]["facets"]["parent"]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("mlc.fraud", PIPELINE)
    # the inputs are the model's sources, each with ml.yaml's columns as its schema
    by_name = {Path(d["name"]).name: d for d in start["inputs"]}
    assert sorted(by_name) == ["customer_daily.parquet", "merchant_daily.parquet",
                               "transactions.parquet"]
    transactions = by_name["transactions.parquet"]
    assert transactions["namespace"] == "file"
    assert transactions["name"] == str((data_root / "data" / "transactions.parquet").resolve())
    fields = transactions["facets"]["schema"]["fields"]
    assert [(f["name"], f["type"]) for f in fields] == \
        [(c.name, c.type) for c in project.sources["transactions"].columns]

    # a failing step: FAIL with the step's message; the same parent run for every step
    (data_root / "data" / "merchant_daily.parquet").unlink()
    with pytest.raises(StepFailed):
        run(project, "validate-data", data_root, run_dir)
    events = read_events(run_dir / "lineage" / "events.jsonl")
    assert [e["eventType"] for e in events] == ["START", "COMPLETE", "START", "FAIL"]
    check_event(events[-1], registry)
    error = events[-1]["run"]["facets"]["errorMessage"]
    assert "merchant_daily" in error["message"] and error["programmingLanguage"] == "python"
    assert len({e["run"]["facets"]["parent"]["run"]["runId"] for e in events}) == 1


class Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, str, dict]] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Recorder.received.append((self.path, self.headers.get("Authorization", ""),
                                  json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def lineage_server():
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    Recorder.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_transport_posts_to_the_endpoint_with_the_token(tmp_path, data_root, registry,
                                                             lineage_server, monkeypatch):
    project = lineage_project({"transport": "http", "namespace": "mlc.fraud",
                                         "url": lineage_server, "endpoint": "api/v1/lineage"})
    monkeypatch.setenv("MLC_LINEAGE_API_KEY", "s3cret-token")
    run(project, "validate-data", data_root, tmp_path / "run")
    assert [(p, a, e["eventType"]) for p, a, e in Recorder.received] == [
        ("/api/v1/lineage", "Bearer s3cret-token", "START"),
        ("/api/v1/lineage", "Bearer s3cret-token", "COMPLETE")]
    for _, _, event in Recorder.received:
        check_event(event, registry)


def test_an_unreachable_server_does_not_fail_the_step(tmp_path, data_root):
    project = lineage_project({"transport": "http", "namespace": "mlc.fraud",
                                         "url": "http://127.0.0.1:9", "endpoint": "lineage"})
    run(project, "validate-data", data_root, tmp_path / "run")  # no exception


def test_no_lineage_no_client(tmp_path, data_root, monkeypatch):
    project = without_suites(check_environment(ROOT, "dev", Diagnostics()))
    assert project.platform.lineage is None
    for name in [m for m in sys.modules if m == "openlineage" or m.startswith("openlineage.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "openlineage", None)  # any import of it would fail
    run(project, "validate-data", data_root, tmp_path / "run")
    assert not list((tmp_path / "run").rglob("*.jsonl"))


def test_the_token_reaches_every_step_pod_by_reference(tmp_path):
    shutil.copy(ROOT / "ml.yaml", tmp_path / "ml.yaml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    text = (tmp_path / "ml.yaml").read_text()
    text = text.replace("\nsecrets:\n", "\nsecrets:\n  marquez-token:\n"
                        "    kubernetes: {name: marquez, key: token}\n", 1)
    text = text.replace("\nplatform:\n", "\nplatform:\n  lineage:\n    transport: http\n"
                        "    url: http://marquez.lineage.svc:5000\n"
                        "    apiKeySecret: marquez-token\n", 1)
    (tmp_path / "ml.yaml").write_text(text)
    diags = Diagnostics()
    (compiled,) = compile_project(tmp_path, ["dev"], diags)
    assert compiled.project.platform.lineage.api_key.k8s_name == "marquez"
    import yaml

    docs = [d for path, body in compiled.files.items() if path.endswith(".yaml")
            for d in yaml.safe_load_all(body.decode()) if isinstance(d, dict)]
    (wt,) = [d for d in docs if d.get("kind") == "WorkflowTemplate"
             and d["metadata"]["name"] == PIPELINE]
    # every step (the notify hook is not a step: it sends no events)
    containers = [t["container"] for t in wt["spec"]["templates"]
                  if "container" in t and "--step" in t["container"].get("args", [])]
    assert len(containers) == len(compiled.project.pipelines[PIPELINE].steps)
    for c in containers:
        env = {e["name"]: e for e in c["env"]}
        assert env["MLC_LINEAGE_API_KEY"]["valueFrom"] == \
            {"secretKeyRef": {"name": "marquez", "key": "token"}}
    # the NetworkPolicy lets the steps reach the lineage server's namespace on its port
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    assert any(
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "lineage"}}}
        in rule["to"] and {"port": 5000, "protocol": "TCP"} in rule.get("ports", [])
        for p in policies for rule in p["spec"].get("egress", []))


@pytest.mark.slow
def test_kafka_transport_with_no_broker_does_not_stop_the_step(tmp_path, data_root):
    """The real Kafka transport (confluent-kafka) towards a port nobody listens on: each
    event gives up after the producer's timeout and the step still succeeds."""
    pytest.importorskip("confluent_kafka")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    project = lineage_project({"transport": "kafka", "namespace": "mlc.fraud",
                               "bootstrap_servers": f"127.0.0.1:{port}",
                               "topic": "openlineage.events"})
    run(project, "validate-data", data_root, tmp_path / "run")  # no exception, no hang


def test_kafka_transport_delivers_each_event_to_the_topic(tmp_path, data_root, registry,
                                                        monkeypatch):
    """The Kafka transport as compiled (topic, brokers, flush after each event) through
    openlineage-python's own KafkaTransport, with the brokers replaced at the client
    library's boundary (tests/fake_kafka.py): every event reaches the topic, keyed by
    the run, and is a valid OpenLineage event."""
    from . import fake_kafka

    produced = tmp_path / "produced.json"
    monkeypatch.setenv("FAKE_KAFKA_PRODUCED", str(produced))
    monkeypatch.setitem(sys.modules, "confluent_kafka", fake_kafka.load())
    project = lineage_project({"transport": "kafka", "namespace": "mlc.fraud",
                               "bootstrap_servers": "kafka-0.kafka:9092",
                               "topic": "openlineage.events"})
    run(project, "validate-data", data_root, tmp_path / "run")
    record = json.loads(produced.read_text())
    assert record["config"]["bootstrap.servers"] == "kafka-0.kafka:9092"
    messages = record["messages"]
    assert [m["topic"] for m in messages] == ["openlineage.events"] * 2
    events = [json.loads(m["value"]) for m in messages]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        check_event(event, registry)
        assert event["job"]["name"] == f"{PIPELINE}.validate-data"
    # one key for the run's events, so one partition keeps them in order
    assert messages[0]["key"] and messages[0]["key"] == messages[1]["key"]


def test_kafka_brokers_get_an_egress_rule(tmp_path):
    shutil.copy(ROOT / "ml.yaml", tmp_path / "ml.yaml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    text = (tmp_path / "ml.yaml").read_text().replace(
        "\nplatform:\n", "\nplatform:\n  lineage: {transport: kafka, topic: ol.events, "
        "bootstrapServers: \"kafka-0.kafka.kafka.svc:9092,kafka-1.kafka.kafka.svc:9092\"}\n", 1)
    (tmp_path / "ml.yaml").write_text(text)
    (compiled,) = compile_project(tmp_path, ["dev"], Diagnostics())
    import yaml

    rules = [rule for path, body in compiled.files.items() if path.startswith("network/")
             for d in yaml.safe_load_all(body.decode()) if isinstance(d, dict)
             for rule in d.get("spec", {}).get("egress", [])]
    assert any({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}
               in r["to"] and {"port": 9092, "protocol": "TCP"} in r.get("ports", [])
               for r in rules)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_a_dataset_models_train_step_names_its_files_as_input(tmp_path, registry, env):
    """examples/llm's fine-tune reads a `dataset:` of files, not sources: the train step's
    events name it as OpenLineage names files (a local folder made absolute against the data
    root, an object store's bucket and key), and the registered model as the output."""
    from mlc.compiler import ir
    from mlc.runtime.lineage import StepLineage

    project = check_environment(ROOT / "examples" / "llm", env, Diagnostics())
    assert project is not None
    lineage = ir.Lineage(transport="file", namespace="support", path="lineage/events.jsonl")
    project = project.model_copy(update={"platform": project.platform.model_copy(
        update={"lineage": lineage})})
    run_dir = tmp_path / "run"
    ctx = build_context(project, "train-support-assistant", "train", environ={
        "MLC_DATA_ROOT": str(tmp_path), "MLC_RUN_DIR": str(run_dir), "MLC_RUN_ID": "wf-1"})
    StepLineage(ctx).start()
    [event] = read_events(run_dir / "lineage" / "events.jsonl")
    check_event(event, registry)
    [data] = event["inputs"]
    if env == "dev":  # `files: data/chats`, relative to the project folder
        assert (data["namespace"], data["name"]) == ("file", str(tmp_path / "data" / "chats"))
        assert data["facets"]["documentation"]["description"] == "training data: files dataset"
    else:
        assert (data["namespace"], data["name"]) == ("s3://support-ml-corpora",
                                                     "chats/resolved-*.jsonl")
        assert data["facets"]["documentation"]["description"] == \
            "training data: files dataset (jsonl)"
    [model] = event["outputs"]
    assert model["name"] == f"models/{project.models['support-assistant'].registered_name}"
