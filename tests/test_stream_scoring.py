"""Stream scoring (`mode: stream`), without Kafka: the generated objects, both clients'
settings, the consumer run as declared.

- The compiled Deployment, ServiceAccount and NetworkPolicy pass kubernetes-validate, the
  ScaledObject and TriggerAuthentication KEDA's CRDs, the PodMonitor and PrometheusRule
  theirs; the lag, failure and poison alerts pass promtool.
- The consumer's and producer's settings are accepted by the real librdkafka.
- The Deployment's container runs as a process exactly as declared (command, args, env,
  Secret and ConfigMap mounts; tests/cluster_pods.py) against a real model registered in a
  real MLflow file store. Only the Kafka client is replaced, at the library boundary
  (tests/fake_kafka.py, the ingestion tests' stand-in): N events in give N scored events
  out with their keys and the model's predictions, a poison event goes where ml.yaml says
  and is counted, offsets are committed only after the output is flushed, and a process
  killed before its flush has its batch read again by the next one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project

from . import crd_monitoring_check, fake_kafka, schema_check
from .cluster_pods import Cluster, Image
from .conftest import write_project
from .servers import free_port
from .test_import_boundary import HEAVY
from .test_streams_ingest import _pem_files

ENDPOINT = "fraud-stream"


def ml_yaml(tracking: str = "http://mlflow.mlflow.svc.cluster.local:5000", *,
            keda: bool = True, scaling: str = "autoscaling: {minReplicas: 0, maxReplicas: 4}",
            poison: str = "onPoison: deadLetter\n      deadLetterTopic: fraud-dead",
            online: bool = False) -> str:
    return f"""\
apiVersion: mlc.dev/v1
kind: Project
metadata:
  name: fraud
platform:
  imagePolicy: tag
  development: true
  mlflow: {{trackingUri: "{tracking}"}}
{"  keda: {pollingInterval: 15s}" if keda else ""}
secrets:
  kafka-user: {{kubernetes: {{name: kafka-auth, key: username}}}}
  kafka-password: {{kubernetes: {{name: kafka-auth, key: password}}}}
  kafka-ca: {{kubernetes: {{name: kafka-tls, key: ca.crt}}}}
  kafka-cert: {{kubernetes: {{name: kafka-client, key: tls.crt}}}}
  kafka-key: {{kubernetes: {{name: kafka-client, key: tls.key}}}}
hardware:
  cpu-small: {{cpu: 500m, memory: 1Gi}}
sources:
  history:
    type: file
    path: data/tx.parquet
    columns:
      - {{name: card_id, type: int64}}
      - {{name: event_timestamp, type: unix_timestamp}}
      - {{name: amount, type: float64}}
      - {{name: hour, type: int64}}
      - {{name: label, type: int64}}
  transactions:
    type: kafka
    bootstrapServers: "kafka.data.svc:9093"
    topic: transactions
    batchSource: history
    auth:
      sasl: {{mechanism: SCRAM-SHA-512, usernameSecret: kafka-user,
             passwordSecret: kafka-password}}
      tls: {{caSecret: kafka-ca, certSecret: kafka-cert, keySecret: kafka-key}}
entities:
  card: {{joinKey: card_id}}
features:
  card_tx:
    entities: [card]
    source: history
    online: {"true" if online else "false"}
    fields:
      - {{name: amount, type: float64}}
      - {{name: hour, type: int64}}
models:
  fraud:
    task: classification
    inputs: {{features: [card_tx]}}
    label: {{source: history, column: label}}
    training: {{hardware: cpu-small}}
serving:
  {ENDPOINT}:
    model: fraud
    version: 1
    mode: stream
    hardware: cpu-small
    {scaling}
    stream:
      input: transactions
      outputTopic: fraud-scores
      key: tx_id
      batchSize: 3
      linger: 50ms
      startFrom: earliest
      {poison}
      maxLag: 500
      lagFor: 5m
"""


def _compile(tmp: Path, text: str):
    root = write_project(tmp, {"ml.yaml": text})
    diags = Diagnostics()
    compiled = compile_project(root, None, diags)
    assert not diags.errors, [d.message for d in diags.errors]
    (env,) = compiled
    return env.files, env.project


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("project"), ml_yaml())


def _objects(files: dict[str, bytes], prefix: str) -> list[dict]:
    return [doc for path, data in sorted(files.items()) if path.startswith(prefix)
            and path.endswith(".yaml") for doc in yaml.safe_load_all(data) if doc]


def _kind(files, kind: str) -> dict:
    (obj,) = [o for o in _objects(files, "streams/") if o["kind"] == kind]
    return obj


# --- the objects ---------------------------------------------------------------------------

def test_objects_pass_kubernetes_validate_and_their_crds(compiled):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    files, _ = compiled
    objs = _objects(files, "streams/") + _objects(files, "monitoring/prometheusrule-stream")
    assert sorted(o["kind"] for o in objs) == [
        "Deployment", "NetworkPolicy", "PodMonitor", "PrometheusRule", "ScaledObject",
        "ServiceAccount", "TriggerAuthentication"]
    assert not [p for p in files if p.startswith("serving/")]  # no HTTP server, no Service
    version = kubernetes_validate.latest_version()
    for obj in objs:
        group = obj["apiVersion"].split("/")[0]
        if group == "keda.sh":
            schema_check.require_schemas()
            crd = {"ScaledObject": "keda/keda.sh_scaledobjects.yaml",
                   "TriggerAuthentication": "keda/keda.sh_triggerauthentications.yaml"}
            assert schema_check.check_crd(obj, crd[obj["kind"]]) == [], obj["kind"]
        elif group == "monitoring.coreos.com":
            if not crd_monitoring_check.available():
                pytest.skip("shared/schemas/prometheus-operator is absent")
            assert crd_monitoring_check.errors(obj) == [], obj["kind"]
        else:
            kubernetes_validate.validate(obj, version, strict=True)


def test_pod_is_locked_down_pinned_and_reads_secrets_by_reference(compiled):
    files, _ = compiled
    deployment = _kind(files, "Deployment")
    assert "replicas" not in deployment["spec"]  # KEDA's to set
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "mlc.runtime"]
    assert c["args"] == ["stream-score", "--project", "/etc/mlc/project.json", "--endpoint",
                         ENDPOINT]
    assert pod["securityContext"]["runAsNonRoot"] and not pod["automountServiceAccountToken"]
    assert c["securityContext"]["readOnlyRootFilesystem"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["limits"] and c["resources"]["requests"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MLC_MODEL_URI"] == "models:/fraud/1"  # the pinned registry version
    by_ref = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert by_ref == {"MLC_KAFKA_SASL_USERNAME": {"name": "kafka-auth", "key": "username"},
                      "MLC_KAFKA_SASL_PASSWORD": {"name": "kafka-auth", "key": "password"}}
    (tls,) = [v for v in pod["volumes"] if v["name"] == "kafka-tls"]
    assert tls["projected"]["defaultMode"] == 0o440
    policy = _kind(files, "NetworkPolicy")
    assert policy["spec"]["egress"][0] == {"to": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "data"}}}], "ports": [{"port": 9093, "protocol": "TCP"}]}


def test_keda_scales_on_the_groups_lag_with_the_consumers_credentials(compiled):
    files, _ = compiled
    scaled = _kind(files, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "fraud-stream-score"
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"],
            scaled["pollingInterval"]) == (0, 4, 15)
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka" and trigger["metadata"] == {
        "bootstrapServers": "kafka.data.svc:9093", "consumerGroup": "fraud-fraud-stream-score",
        "topic": "transactions", "lagThreshold": "30", "offsetResetPolicy": "earliest",
        "sasl": "scram_sha512", "tls": "enable"}
    auth = _kind(files, "TriggerAuthentication")["spec"]
    assert {r["parameter"]: (r["name"], r["key"]) for r in auth["secretTargetRef"]} == {
        "username": ("kafka-auth", "username"), "password": ("kafka-auth", "password"),
        "ca": ("kafka-tls", "ca.crt"), "cert": ("kafka-client", "tls.crt"),
        "key": ("kafka-client", "tls.key")}


def test_without_keda_a_fixed_replica_count(tmp_path):
    files, project = _compile(tmp_path, ml_yaml(keda=False, scaling="replicas: 2"))
    assert _kind(files, "Deployment")["spec"]["replicas"] == 2
    assert not [o for o in _objects(files, "streams/") if o["apiVersion"].startswith("keda")]
    assert project.endpoints[ENDPOINT].stream.keda is None


def test_online_features_mount_the_feast_repository(tmp_path):
    files, _ = _compile(tmp_path, ml_yaml(online=True).replace(
        "    mode: stream\n", "    mode: stream\n    onlineFeatures: true\n"))
    pod = _kind(files, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MLC_FEAST_REPO"] == "/etc/mlc/feast"
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {
        "/etc/mlc/feast/feature_store.yaml", "/etc/mlc/feast/features.py"}
    assert [v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "feast"] == [
        "fraud-feast-repo"]


def test_explain_shows_the_resolved_stream(compiled, tmp_path, capsys):
    from mlc.cli import main

    root = write_project(tmp_path, {"ml.yaml": ml_yaml()})
    assert main(["explain", "-C", str(root), "default",
                 f"endpoints.{ENDPOINT}.stream.consumer_group"]) == 0
    assert '"fraud-fraud-stream-score"  (resolved by mlc)' in capsys.readouterr().out
    assert main(["explain", "-C", str(root), "default",
                 f"serving.{ENDPOINT}.stream.onPoison"]) == 0
    assert '"deadLetter"  (ml.yaml:' in capsys.readouterr().out


def test_cost_prices_the_consumers_at_their_replica_range(compiled):
    from mlc.compiler.cost.estimate import estimate

    _, project = compiled
    ir = project.model_dump(mode="json")
    (line,) = [x for x in estimate(ir).lines if x.subject == f"serving.{ENDPOINT}"]
    assert line.category == "stream scoring" and line.low == 0 and line.high > 0


def test_lag_failure_and_poison_alerts_pass_promtool(compiled, tmp_path):
    import shutil

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-system-deps.sh)")
    files, _ = compiled
    for path, data in files.items():
        if path.startswith(("monitoring/rules/stream-", "monitoring/tests/stream-")):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_bytes(data)
    (rules,) = (tmp_path / "monitoring/rules").iterdir()
    (tests,) = (tmp_path / "monitoring/tests").iterdir()
    for args in (["check", "rules", str(rules)], ["test", "rules", str(tests)]):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    text = rules.read_text()
    for alert in ("StreamConsumerLagHigh", "StreamScoringFailing", "StreamPoisonEvents"):
        assert f"alert: {alert}" in text
    assert "mlc_stream_consumer_lag{" in text and "> 500" in text


def test_librdkafka_accepts_both_clients_settings(compiled, tmp_path):
    confluent_kafka = pytest.importorskip("confluent_kafka", reason="mlc[streams]")
    from mlc.runtime.stream_score.config import consumer_config, producer_config

    _, project = compiled
    stream = project.endpoints[ENDPOINT].stream
    env = {"MLC_KAFKA_SASL_USERNAME": "scorer", "MLC_KAFKA_SASL_PASSWORD": "pw"}
    for part, text in _pem_files(tmp_path).items():
        (tmp_path / part).write_text(text)
        env[f"MLC_KAFKA_TLS_{part.upper()}_FILE"] = str(tmp_path / part)
    consumer = consumer_config(ENDPOINT, stream, env)
    assert consumer["enable.auto.commit"] is False
    assert consumer["group.id"] == "fraud-fraud-stream-score"
    confluent_kafka.Consumer(consumer).close()  # librdkafka loads and checks the TLS files
    producer = producer_config(ENDPOINT, stream, env)
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    confluent_kafka.Producer(producer).flush(0)


def test_validate_of_a_stream_project_imports_nothing_heavy(tmp_path):
    root = write_project(tmp_path, {"ml.yaml": ml_yaml()})
    code = ("import sys, json; from mlc.cli import main; rc = main(['validate', '-C', "
            "sys.argv[1]]); print(json.dumps([rc, sorted(sys.modules)]))")
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rc, modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert rc == 0
    assert [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)] == []


# --- the Deployment, run as declared --------------------------------------------------------

def _register(folder: Path, tracking: str, features: list[str]) -> tuple[str, object]:
    """A real mlc model (random weights) as version 1 of `fraud`; returns the version and a
    predictor straight from the saved files (the reference the scores must equal)."""
    from mlc.runtime import model_format

    from .test_serve import _register as register

    version = register(folder, tracking, "fraud", features, [8])
    module, spec = model_format.load_model(folder)

    def predict(rows):
        import numpy as np

        return model_format.predict(module, spec, np.asarray(rows, dtype=np.float64))
    return version, predict


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("mlc_stream_")}


EVENTS = [
    {"tx_id": "t1", "amount": 12.5, "hour": 3},
    {"tx_id": "t2", "amount": 900.0, "hour": 23},
    "not json {",
    {"tx_id": "t4", "amount": "lots", "hour": 1},
    {"tx_id": "t5", "amount": 40.0, "hour": 12},
    {"tx_id": "t6", "amount": 7.25, "hour": 8},
    {"amount": 1.0, "hour": 2},
    {"tx_id": "t8", "amount": 15.0, "hour": 17},
]
GOOD = [e for e in EVENTS if isinstance(e, dict) and "tx_id" in e
        and isinstance(e["amount"], float)]


class Pod:
    """The compiled Deployment's container as a local process, over the fake client."""

    def __init__(self, tmp: Path, files: dict[str, bytes], work: str):
        tree = tmp / "tree"
        for path, data in files.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_bytes(data)
        docs = [d for p in sorted(tree.rglob("*.yaml")) for d in yaml.safe_load_all(
            p.read_text()) if isinstance(d, dict)]
        deployment = _kind(files, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        (self.container,) = pod["containers"]
        self.pems = _pem_files(tmp)
        cluster = Cluster(tree=docs, work=tmp / work,
                          images={self.container["image"]: Image(
                              workdir=tmp, env={"MLFLOW_ALLOW_FILE_STORE": "true"})},
                          secrets={("kafka-auth", "username"): "scorer",
                                   ("kafka-auth", "password"): "s3cret",
                                   ("kafka-tls", "ca.crt"): self.pems["ca"],
                                   ("kafka-client", "tls.crt"): self.pems["cert"],
                                   ("kafka-client", "tls.key"): self.pems["key"]})
        self.argv, self.env, self.cwd = cluster.pod_process(
            self.container, {v["name"]: v for v in pod["volumes"]}, "fraud-stream-score-0",
            {})
        fake = fake_kafka.install(tmp / "fake-client")
        (tmp / "messages.json").write_text(json.dumps([
            {"key": f"k{i}", "value": e if isinstance(e, str) else json.dumps(e)}
            for i, e in enumerate(EVENTS)]))
        self.record, self.produced = tmp / "record.json", tmp / "produced.json"
        self.env.update(FAKE_KAFKA_MESSAGES=str(tmp / "messages.json"),
                        FAKE_KAFKA_RECORD=str(self.record),
                        FAKE_KAFKA_PRODUCED=str(self.produced),
                        PYTHONPATH=f"{fake}{os.pathsep}{self.env['PYTHONPATH']}")
        self.tmp = tmp

    def run(self, until_consumed: int, crash_at_flush: int | None = None
            ) -> tuple[int, dict[str, float], str]:
        """Start the process; SIGTERM once `until_consumed` events are done (or let it die
        at a flush); its exit code, last metrics and log."""
        port = free_port()
        env = {**self.env, "MLC_STREAM_METRICS_PORT": str(port)}
        if crash_at_flush is not None:
            env["FAKE_KAFKA_CRASH_AT_FLUSH"] = str(crash_at_flush)
        log = self.tmp / f"score-{port}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(self.argv, env=env, cwd=self.cwd, stdout=out,
                                    stderr=subprocess.STDOUT)
        seen: dict[str, float] = {}
        try:
            wait = threading.Event()
            for _ in range(1200):  # the model loads, then the batches go through
                if proc.poll() is not None:
                    break
                try:
                    seen = _scrape(port)
                except OSError:
                    pass
                if seen.get(f'mlc_stream_consumer_lag{{endpoint="{ENDPOINT}",'
                            'partition="0"}') == 0 and seen.get(
                        f'mlc_stream_events_consumed_total{{endpoint="{ENDPOINT}"}}'
                        ) == until_consumed:
                    break
                wait.wait(0.1)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        return code, seen, log.read_text()


@pytest.mark.slow  # the serving runtime (torch, MLflow) starts twice: 50 s here (15 s CPU)
def test_deployment_scores_the_topic_at_least_once(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlc[serve]")
    pytest.importorskip("torch", reason="mlc[serve]")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    tracking = (tmp_path / "mlruns").as_uri()
    files, project = _compile(tmp_path / "project", ml_yaml(tracking))
    features = [r.field for r in project.models["fraud"].features]
    version, predict = _register(tmp_path / "model", tracking, features)
    assert version == "1"
    pod = Pod(tmp_path, files, "cluster")

    # the first pod dies at its second flush: batch 1 is out and committed, batch 2 is lost
    code, _, log = pod.run(until_consumed=len(EVENTS), crash_at_flush=2)
    assert code == 70, log
    first = json.loads(pod.record.read_text())
    assert first["commits"] == [3]
    assert len(json.loads(pod.produced.read_text())["messages"]) == 3  # 2 scored, 1 dead

    # the next pod of the group reads batch 2 again, from the committed offset
    code, seen, log = pod.run(until_consumed=len(EVENTS) - 3)
    assert code == 0, log
    record = json.loads(pod.record.read_text())
    assert record["starts"] == 2 and record["closed"]
    assert record["commits"] == [3, 6, 8]
    produced = json.loads(pod.produced.read_text())["messages"]
    # every commit came after the flush of everything its batch produced
    assert [c["flushed"] for c in record["commit_log"]] == [3, 3, 5]
    config = record["config"]
    assert config["sasl.username"] == "scorer" and config["sasl.password"] == "s3cret"
    assert Path(config["ssl.ca.location"]).read_text() == pod.pems["ca"]
    assert produced[0]["headers"] == {} and len(produced) == len(EVENTS)

    scored = [m for m in produced if m["topic"] == "fraud-scores"]
    assert [m["key"] for m in scored] == [e["tx_id"] for e in GOOD]  # each once, in order
    expected = predict([[e[f] for f in features] for e in GOOD])
    for m, want in zip(scored, expected, strict=True):
        value = json.loads(m["value"])
        assert value["tx_id"] == m["key"] and value["model_version"] == "1"
        got = ([value[k] for k in sorted(value) if k.startswith("prediction_")]
               if want.ndim else [value["prediction"]])
        assert got == pytest.approx(list(want.ravel()), rel=1e-6)
    dead = [m for m in produced if m["topic"] == "fraud-dead"]
    assert [(m["key"], m["headers"]["mlc-poison-reason"]) for m in dead] == [
        ("k2", "decode"), ("k3", "schema"), ("k6", "schema")]
    assert dead[0]["value"] == "not json {"  # unchanged, as it came
    # the second pod's counters: batches 2 and 3
    assert seen[f'mlc_stream_events_scored_total{{endpoint="{ENDPOINT}"}}'] == 3
    assert seen['mlc_stream_events_poison_total{action="dead_letter",endpoint="fraud-stream",'
                'reason="schema"}'] == 2


# --- the loop, in this process, over the same fake client ---------------------------------

@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    """A real mlc model, loaded as the runtime loads a downloaded one (no registry here)."""
    pytest.importorskip("torch", reason="mlc[serve]")
    from mlc.runtime import model_format
    from mlc.runtime.serve.loader import load_folder

    folder = tmp_path_factory.mktemp("model")
    features = ["amount", "hour"]
    spec = model_format.make_spec(task="classification", features=features,
                                  feature_refs=features, hidden_layers=[4], dropout=0.0,
                                  fill=[0.0, 0.0], mean=[0.0, 0.0], std=[1.0, 1.0], label="y",
                                  classes=["low", "mid", "high"])
    model_format.save_model(folder, spec, model_format.build_module(spec).state_dict())
    return load_folder(folder, name="fraud", version="3", alias=None, trained_at=None)


def _scorer(tmp_path, monkeypatch, real_model, events, **settings):
    from prometheus_client import CollectorRegistry

    from mlc.runtime.serve.validation import Signature
    from mlc.runtime.stream_score.loop import EventRows, Model, StreamMetrics, StreamScorer

    fake = fake_kafka.load()
    (tmp_path / "messages.json").write_text(json.dumps(events))
    for var, name in (("MESSAGES", "messages.json"), ("RECORD", "record.json"),
                      ("PRODUCED", "produced.json")):
        monkeypatch.setenv(f"FAKE_KAFKA_{var}", str(tmp_path / name))
    registry = CollectorRegistry()
    m = real_model
    scorer = StreamScorer(fake.Consumer({}), fake.Producer({}),
                          Model(m.name, m.version, m.predict, m.spec["classes"]),
                          EventRows(Signature.build(m.features, {"hour": "int64"})),
                          StreamMetrics(ENDPOINT, registry), output_topic="scores",
                          **{"dead_letter_topic": None, "key_field": None, "batch_size": 10,
                             "linger_seconds": 0.0, **settings})
    scorer.consumer.subscribe(["tx"])
    return scorer, registry


def _read(tmp_path, name: str) -> dict:
    return json.loads((tmp_path / name).read_text())


def test_skip_counts_the_poison_and_carries_the_messages_key(tmp_path, monkeypatch,
                                                             real_model):
    events = [{"key": "a", "value": json.dumps({"amount": 3.0, "hour": 1})},
              {"key": "b", "value": json.dumps({"amount": 3.0, "hour": 1.5})},  # no int
              {"key": "c", "value": "[1, 2]"},
              {"key": None, "value": json.dumps({"amount": -1.0, "hour": 7})}]
    scorer, registry = _scorer(tmp_path, monkeypatch, real_model, events)
    assert scorer.step() == 4
    produced = _read(tmp_path, "produced.json")["messages"]
    assert [(m["topic"], m["key"]) for m in produced] == [("scores", "a"), ("scores", None)]
    want = real_model.predict(np.array([[3.0, 1.0], [-1.0, 7.0]]))  # a probability per class
    assert [[json.loads(m["value"])[f"prediction_{c}"] for c in ("low", "mid", "high")]
            for m in produced] == [pytest.approx(list(row)) for row in want]
    assert json.loads(produced[0]["value"])["model_version"] == "3"
    record = _read(tmp_path, "record.json")
    assert record["commit_log"] == [{"offset": 4, "flushed": 2}]

    def count(reason):
        return registry.get_sample_value("mlc_stream_events_poison_total", {
            "endpoint": ENDPOINT, "reason": reason, "action": "skipped"})
    assert (count("schema"), count("decode")) == (1.0, 1.0)
    assert registry.get_sample_value("mlc_stream_events_scored_total",
                                     {"endpoint": ENDPOINT}) == 2.0


def test_an_output_the_brokers_refuse_is_not_committed(tmp_path, monkeypatch, real_model):
    from mlc.runtime.stream_score.loop import ScoringFailed

    monkeypatch.setenv("FAKE_KAFKA_REFUSE_TOPIC", "dead")
    events = [{"value": json.dumps({"tx_id": 1, "amount": 1.0, "hour": 2})},
              {"value": json.dumps({"amount": 1.0, "hour": 2})}]  # no key: poison
    scorer, registry = _scorer(tmp_path, monkeypatch, real_model, events,
                               dead_letter_topic="dead", key_field="tx_id")
    with pytest.raises(ScoringFailed, match="1 of 2 outputs were not delivered"):
        scorer.step()
    assert _read(tmp_path, "record.json")["commits"] == []  # read again after the restart
    assert registry.get_sample_value("mlc_stream_failures_total", {
        "endpoint": ENDPOINT, "reason": "produce"}) == 1.0
    # the dead letter was never delivered, so it is not counted as one yet
    assert registry.get_sample_value("mlc_stream_events_poison_total", {
        "endpoint": ENDPOINT, "reason": "schema", "action": "dead_letter"}) == 0.0


@pytest.mark.slow  # the serving runtime (torch, MLflow) starts once
def test_mlc_run_serve_runs_the_stream_consumer_on_this_machine(tmp_path):
    """`mlc run serve` of a stream endpoint runs its consumer with this machine's registry
    (the model registered in .mlc/mlflow.db) and the shell's Kafka credentials, until
    SIGTERM; the topic's events come out scored."""
    pytest.importorskip("mlflow", reason="mlc[serve]")
    pytest.importorskip("torch", reason="mlc[serve]")
    root = write_project(tmp_path / "project", {"ml.yaml": ml_yaml(),
                                                "environments/dev.yaml": "{}\n"})
    tracking = f"sqlite:///{root / '.mlc' / 'mlflow.db'}"  # where `mlc run` keeps its registry
    (root / ".mlc").mkdir()
    features = ["amount", "hour"]
    version, predict = _register(tmp_path / "model", tracking, features)
    assert version == "1"
    fake = fake_kafka.install(tmp_path / "fake-client")
    (tmp_path / "messages.json").write_text(json.dumps([
        {"key": f"k{i}", "value": e if isinstance(e, str) else json.dumps(e)}
        for i, e in enumerate(EVENTS)]))
    pems = _pem_files(tmp_path)
    for part, text in pems.items():
        (tmp_path / f"{part}.pem").write_text(text)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), *sys.path]),
           "FAKE_KAFKA_MESSAGES": str(tmp_path / "messages.json"),
           "FAKE_KAFKA_RECORD": str(tmp_path / "record.json"),
           "FAKE_KAFKA_PRODUCED": str(tmp_path / "produced.json"),
           "MLC_KAFKA_SASL_USERNAME": "me", "MLC_KAFKA_SASL_PASSWORD": "local",
           **{f"MLC_KAFKA_TLS_{p.upper()}_FILE": str(tmp_path / f"{p}.pem") for p in pems},
           "MLC_STREAM_METRICS_PORT": str(port)}
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlc", "run", "serve", ENDPOINT],
                                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    seen: dict[str, float] = {}
    try:
        for _ in range(1800):
            if proc.poll() is not None:
                break
            try:
                seen = _scrape(port)
            except OSError:
                pass
            if seen.get(f'mlc_stream_events_consumed_total{{endpoint="{ENDPOINT}"}}') == len(
                    EVENTS):
                break
            threading.Event().wait(0.1)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()[-4000:]
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["config"]["sasl.username"] == "me" and record["closed"]
    produced = json.loads((tmp_path / "produced.json").read_text())["messages"]
    scored = [m for m in produced if m["topic"] == "fraud-scores"]
    assert [m["key"] for m in scored] == [e["tx_id"] for e in GOOD]
    expected = predict([[e[f] for f in features] for e in GOOD])
    for m, want in zip(scored, expected, strict=True):
        assert json.loads(m["value"])["prediction"] == pytest.approx(float(want), rel=1e-6)



def test_mlc_run_serve_of_a_batch_endpoint_points_to_run_score(tmp_path, capsys):
    from mlc.cli import main

    from .bad_inputs import BASE, edit

    text = edit("    hardware: cpu-small\nmonitoring",
                "    hardware: cpu-small\n  churn-nightly:\n    model: churn\n    mode: batch\n"
                "    batch: {schedule: \"0 2 * * *\", input: events, output: out/s.parquet}\n"
                "monitoring", BASE)
    root = write_project(tmp_path / "project", {
        "ml.yaml": text, "environments/dev.yaml": "platform: {development: true}\n"})
    assert main(["run", "serve", "churn-nightly", "-C", str(root)]) == 2
    assert "mlc run score churn-nightly" in capsys.readouterr().err
