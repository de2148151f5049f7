"""Kafka ingestion, without Kafka: the generated objects, the consumer's settings, the loop.

- The compiled Deployment, ServiceAccount and NetworkPolicy pass kubernetes-validate, the
  PodMonitor and PrometheusRule their CRDs; the lag and failure alerts pass promtool.
- The consumer settings built from the IR and the pod's env are accepted by the real
  librdkafka (confluent_kafka.Consumer), TLS files included; a bad CA is refused.
- The Deployment's container runs as a process exactly as declared (command, args, env,
  Secret and ConfigMap mounts; tests/cluster_pods.py) against a real Feast repository from
  `feast apply`. Only the Kafka client is replaced, at the library boundary: a
  `confluent_kafka` module of the same interface, first on the process's path, that serves
  the test's messages and records what the runtime did. The online store then holds the
  messages' values, read back by Feast; /metrics shows what was consumed, written, failed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project

from . import crd_monitoring_check, fake_kafka
from .cluster_pods import Cluster, Image
from .conftest import write_project
from .servers import free_port

ML_YAML = """\
apiVersion: mlc.dev/v1
kind: Project
metadata:
  name: clicks
platform:
  imagePolicy: tag
  development: true
secrets:
  kafka-user: {kubernetes: {name: kafka-auth, key: username}}
  kafka-password: {kubernetes: {name: kafka-auth, key: password}}
  kafka-ca: {kubernetes: {name: kafka-tls, key: ca.crt}}
  kafka-cert: {kubernetes: {name: kafka-client, key: tls.crt}}
  kafka-key: {kubernetes: {name: kafka-client, key: tls.key}}
sources:
  events:
    type: file
    path: data/events.parquet
    columns:
      - {name: user_id, type: int64}
      - {name: event_timestamp, type: unix_timestamp}
      - {name: clicks, type: int64}
      - {name: spend, type: float64}
  clicks:
    type: kafka
    bootstrapServers: "kafka.data.svc:9093"
    topic: clicks
    batchSource: events
    auth:
      sasl: {mechanism: SCRAM-SHA-512, usernameSecret: kafka-user,
             passwordSecret: kafka-password}
      tls: {caSecret: kafka-ca, certSecret: kafka-cert, keySecret: kafka-key}
    ingest: {batchSize: 3, startFrom: earliest, maxLag: 500, lagFor: 5m}
entities:
  user: {joinKey: user_id}
features:
  user_clicks:
    entities: [user]
    source: clicks
    fields:
      - {name: clicks, type: int64}
      - {name: spend, type: float64}
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict[str, bytes], object]:
    root = write_project(tmp_path_factory.mktemp("project"), {"ml.yaml": ML_YAML})
    diags = Diagnostics()
    (env,) = compile_project(root, None, diags)
    return env.files, env.project


def _objects(files: dict[str, bytes], prefix: str) -> list[dict]:
    return [doc for path, data in sorted(files.items()) if path.startswith(prefix)
            and path.endswith(".yaml") for doc in yaml.safe_load_all(data) if doc]


def _deployment(files) -> dict:
    (dep,) = [o for o in _objects(files, "streams/") if o["kind"] == "Deployment"]
    return dep


# --- the objects ---------------------------------------------------------------------------

def test_objects_pass_kubernetes_validate_and_their_crds(compiled):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    files, _ = compiled
    objs = _objects(files, "streams/") + _objects(files, "monitoring/prometheusrule-ingestion")
    assert sorted(o["kind"] for o in objs) == ["Deployment", "NetworkPolicy", "PodMonitor",
                                               "PrometheusRule", "ServiceAccount"]
    version = kubernetes_validate.latest_version()
    for obj in objs:
        if obj["apiVersion"].startswith("monitoring.coreos.com"):
            if not crd_monitoring_check.available():
                pytest.skip("shared/schemas/prometheus-operator is absent")
            assert crd_monitoring_check.errors(obj) == [], obj["kind"]
        else:
            kubernetes_validate.validate(obj, version, strict=True)


def test_pod_is_locked_down_and_reads_secrets_by_reference(compiled):
    files, _ = compiled
    pod = _deployment(files)["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] and not pod["automountServiceAccountToken"]
    assert c["securityContext"]["readOnlyRootFilesystem"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["limits"] and c["resources"]["requests"]
    by_ref = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert by_ref == {"MLC_KAFKA_SASL_USERNAME": {"name": "kafka-auth", "key": "username"},
                      "MLC_KAFKA_SASL_PASSWORD": {"name": "kafka-auth", "key": "password"}}
    (tls,) = [v for v in pod["volumes"] if v["name"] == "kafka-tls"]
    assert tls["projected"]["defaultMode"] == 0o440
    assert [s["secret"]["name"] for s in tls["projected"]["sources"]] == [
        "kafka-tls", "kafka-client", "kafka-client"]
    policy = next(o for o in _objects(files, "streams/") if o["kind"] == "NetworkPolicy")
    brokers = policy["spec"]["egress"][0]
    assert brokers == {"to": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "data"}}}], "ports": [{"port": 9093, "protocol": "TCP"}]}


def test_lag_and_failure_alerts_pass_promtool(compiled, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-system-deps.sh)")
    files, _ = compiled
    for path, data in files.items():
        if path.startswith(("monitoring/rules/ingestion-", "monitoring/tests/ingestion-")):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_bytes(data)
    (rules,) = (tmp_path / "monitoring/rules").iterdir()
    (tests,) = (tmp_path / "monitoring/tests").iterdir()
    for args in (["check", "rules", str(rules)], ["test", "rules", str(tests)]):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    text = rules.read_text()
    assert "sum by (namespace, source) (mlc_ingest_consumer_lag{" in text and "> 500" in text


# --- the consumer's settings in the real librdkafka ----------------------------------------

def _pem_files(folder: Path) -> dict[str, str]:
    """A CA, and a client certificate and key it signed, as PEM text."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def cert(subject: str, key, issuer: str, signer, ca: bool):
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(1 if ca else 2)
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(signer, hashes.SHA256()))

    ca_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    pem = serialization.Encoding.PEM
    return {
        "ca": cert("test-ca", ca_key, "test-ca", ca_key, True).public_bytes(pem).decode(),
        "cert": cert("ingest", client_key, "test-ca", ca_key, False).public_bytes(pem).decode(),
        "key": client_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode(),
    }


def test_librdkafka_accepts_the_settings_and_refuses_a_bad_ca(compiled, tmp_path):
    confluent_kafka = pytest.importorskip("confluent_kafka", reason="mlc[streams]")
    from mlc.runtime.ingest.config import ConfigError, consumer_config

    _, project = compiled
    ingestion = project.ingestions["clicks"]
    pems = _pem_files(tmp_path)
    env = {"MLC_KAFKA_SASL_USERNAME": "ingest", "MLC_KAFKA_SASL_PASSWORD": "pw"}
    for part, text in pems.items():
        (tmp_path / part).write_text(text)
        env[f"MLC_KAFKA_TLS_{part.upper()}_FILE"] = str(tmp_path / part)
    config = consumer_config(ingestion, env)
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512" and config["sasl.password"] == "pw"
    assert config["enable.auto.commit"] is False and config["group.id"] == "clicks-clicks-ingest"
    confluent_kafka.Consumer(config).close()  # librdkafka loads and checks the TLS files here
    (tmp_path / "ca").write_text("not a certificate")
    with pytest.raises(confluent_kafka.KafkaException):
        confluent_kafka.Consumer(config)
    with pytest.raises(ConfigError, match="MLC_KAFKA_SASL_PASSWORD"):
        consumer_config(ingestion, {k: v for k, v in env.items() if "PASSWORD" not in k})


# --- the Deployment, run as declared --------------------------------------------------------

# `feast apply` (the CLI the pipeline's feature_apply step runs), then, once the test says
# so on stdin, the online store read back: one process, one import of Feast.
FEAST_DRIVER = """
import json, sys
from feast import FeatureStore
from feast.cli.cli import cli
cli.main(["--chdir", sys.argv[1], "apply"], standalone_mode=False)
print("APPLIED", flush=True)
sys.stdin.readline()
store = FeatureStore(repo_path=sys.argv[1])
rows = [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]
print("RESULT " + json.dumps(store.get_online_features(
    features=["user_clicks:clicks", "user_clicks:spend"], entity_rows=rows).to_dict()))
"""


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("mlc_ingest_")}


@pytest.mark.slow  # feast apply and a Feast write in a fresh process: about 10 s
def test_deployment_runs_as_declared_and_fills_the_online_store(compiled, tmp_path):
    pytest.importorskip("feast", reason="mlc[serve]")
    files, _ = compiled
    tree = tmp_path / "tree"
    for path, data in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(data)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = [d for p in sorted(tree.rglob("*.yaml"))
            for d in yaml.load_all(p.read_text(), Loader=loader) if isinstance(d, dict)]
    deployment = _deployment(files)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pems = _pem_files(tmp_path)
    cluster = Cluster(tree=docs, work=tmp_path / "cluster",
                      images={container["image"]: Image(workdir=tmp_path)},
                      secrets={("kafka-auth", "username"): "ingest",
                               ("kafka-auth", "password"): "s3cret",
                               ("kafka-tls", "ca.crt"): pems["ca"],
                               ("kafka-client", "tls.crt"): pems["cert"],
                               ("kafka-client", "tls.key"): pems["key"]})
    argv, env, cwd = cluster.pod_process(container, {v["name"]: v for v in pod["volumes"]},
                                         "clicks-ingest-0", {})
    # the development repo keeps its registry and SQLite store under MLC_DATA_ROOT, the
    # pod's scratch volume: `feast apply` and the read-back share it, as one pod would
    repo = Path(env["MLC_FEAST_REPO"])
    feast = subprocess.Popen([sys.executable, "-c", FEAST_DRIVER, str(repo)], env=env, cwd=cwd,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        online = _ingest(env, argv, cwd, feast, tmp_path, pems)
    finally:
        if feast.poll() is None:
            feast.kill()
    assert online["clicks"] == [4, 7, None] and online["spend"] == [10.5, 1.0, None]


def _ingest(env, argv, cwd, feast, tmp_path, pems) -> dict:
    """The ingestion process over the fake client's messages; the online store read back."""
    for line in iter(feast.stdout.readline, ""):  # Feast's own report, then ours
        if line.startswith("APPLIED"):
            break
    else:
        raise AssertionError("feast apply failed (its error is above)")
    fake = fake_kafka.install(tmp_path / "fake-client")
    messages = [
        {"user_id": 1, "event_timestamp": "2026-01-02T10:00:00Z", "clicks": 3, "spend": 9.5},
        {"user_id": 2, "event_timestamp": 1767348000, "clicks": 7, "spend": 1.0},
        "not json {",
        {"user_id": 3, "event_timestamp": "2026-01-02T10:00:00Z", "clicks": "many",
         "spend": 2.0},
        {"user_id": 1, "event_timestamp": "2026-01-02T11:00:00Z", "clicks": 4, "spend": 10.5},
    ]
    (tmp_path / "messages.json").write_text(json.dumps(
        [m if isinstance(m, str) else json.dumps(m) for m in messages]))
    record = tmp_path / "record.json"
    port = free_port()
    env.update(FAKE_KAFKA_MESSAGES=str(tmp_path / "messages.json"), FAKE_KAFKA_RECORD=str(record),
               PYTHONPATH=f"{fake}{os.pathsep}{env['PYTHONPATH']}",
               MLC_INGEST_METRICS_PORT=str(port))
    log = tmp_path / "ingest.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        seen: dict[str, float] = {}
        deadline = threading.Event()
        for _ in range(600):  # until the last batch is written and its lag measured
            if proc.poll() is not None:
                break
            try:
                seen = _scrape(port)
            except OSError:
                seen = {}
            if seen.get('mlc_ingest_consumer_lag{partition="0",source="clicks"}') == 0 and \
                    seen.get('mlc_ingest_messages_consumed_total{source="clicks"}') == 5:
                break
            deadline.wait(0.1)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen['mlc_ingest_rows_pushed_total{source="clicks",view="user_clicks"}'] == 3
    assert seen['mlc_ingest_messages_failed_total{reason="decode",source="clicks"}'] == 1
    assert seen['mlc_ingest_messages_failed_total{reason="schema",source="clicks"}'] == 1
    assert seen['mlc_ingest_messages_failed_total{reason="write",source="clicks"}'] == 0
    done = json.loads(record.read_text())
    config = done["config"]
    assert config["sasl.username"] == "ingest" and config["sasl.password"] == "s3cret"
    for key, part in (("ssl.ca.location", "ca"), ("ssl.certificate.location", "cert"),
                      ("ssl.key.location", "key")):
        assert Path(config[key]).read_text() == pems[part]  # the Secret volume, as mounted
    assert done["subscribed"] == ["clicks"] and done["commits"] == [3, 5] and done["closed"]
    out, _ = feast.communicate("read\n", timeout=120)
    assert feast.returncode == 0, out
    return json.loads(out.split("RESULT ", 1)[1])


FEAST_READ = """
import json, sys
from feast import FeatureStore
store = FeatureStore(repo_path=sys.argv[1])
rows = [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]
print("RESULT " + json.dumps(store.get_online_features(
    features=["user_clicks:clicks", "user_clicks:spend"], entity_rows=rows).to_dict()))
"""


@pytest.mark.slow  # feast apply, then the ingestion and a Feast read in fresh processes
def test_mlc_run_ingest_fills_this_machines_online_store(tmp_path):
    """`mlc run ingest SOURCE` applies this machine's Feast repo and runs the source's
    ingestion as its Deployment does, with the shell's Kafka credentials, until SIGTERM;
    the local online store then holds the messages' values."""
    pytest.importorskip("feast", reason="mlc[serve]")
    root = write_project(tmp_path / "project", {"ml.yaml": ML_YAML,
                                                "environments/dev.yaml": "{}\n"})
    fake = fake_kafka.install(tmp_path / "fake-client")
    messages = [
        {"user_id": 1, "event_timestamp": "2026-01-02T10:00:00Z", "clicks": 3, "spend": 9.5},
        {"user_id": 2, "event_timestamp": 1767348000, "clicks": 7, "spend": 1.0},
        "not json {",
        {"user_id": 1, "event_timestamp": "2026-01-02T11:00:00Z", "clicks": 4, "spend": 10.5},
    ]
    (tmp_path / "messages.json").write_text(json.dumps(
        [m if isinstance(m, str) else json.dumps(m) for m in messages]))
    pems = _pem_files(tmp_path)
    for part, text in pems.items():
        (tmp_path / f"{part}.pem").write_text(text)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), *sys.path]),
           "FAKE_KAFKA_MESSAGES": str(tmp_path / "messages.json"),
           "FAKE_KAFKA_RECORD": str(tmp_path / "record.json"),
           "MLC_KAFKA_SASL_USERNAME": "me", "MLC_KAFKA_SASL_PASSWORD": "local",
           **{f"MLC_KAFKA_TLS_{p.upper()}_FILE": str(tmp_path / f"{p}.pem") for p in pems},
           "MLC_INGEST_METRICS_PORT": str(port)}
    log = tmp_path / "ingest.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlc", "run", "ingest", "clicks"],
                                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        seen: dict[str, float] = {}
        for _ in range(1800):
            if proc.poll() is not None:
                break
            try:
                seen = _scrape(port)
            except OSError:
                seen = {}
            if seen.get('mlc_ingest_consumer_lag{partition="0",source="clicks"}') == 0 and \
                    seen.get('mlc_ingest_messages_consumed_total{source="clicks"}') == 4:
                break
            threading.Event().wait(0.1)
        assert proc.poll() is None, log.read_text()[-4000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen['mlc_ingest_rows_pushed_total{source="clicks",view="user_clicks"}'] == 3
    assert json.loads((tmp_path / "record.json").read_text())["config"]["sasl.username"] == "me"
    read = subprocess.run([sys.executable, "-c", FEAST_READ,
                           str(root / ".mlc" / "deploy" / "dev" / "feast")],
                          env={**os.environ, "MLC_DATA_ROOT": str(root)}, cwd=root,
                          capture_output=True, text=True, timeout=300)
    result = [line for line in read.stdout.splitlines() if line.startswith("RESULT ")]
    assert result, read.stdout + read.stderr
    online = json.loads(result[0][len("RESULT "):])
    assert online["clicks"] == [4, 7, None] and online["spend"] == [10.5, 1.0, None]
