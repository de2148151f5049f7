"""Event triggers (`training.triggers`): a new object in a bucket, a message on a topic, another
pipeline's success, each through an EventSource of its own and the drift gate's cooldown.

The Sensor's trigger is followed as Argo Events and Argo run it: the Sensor's data filter
is applied to events the EventSource would send (gjson path, Go regular expression), the gate
Workflow it creates runs its cooldown step's own command as a local process, and the training
Workflow the gate creates carries the trigger's `reason`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlc.compiler.backends import network
from mlc.compiler.backends.argo import cooldown
from mlc.compiler.backends.argo.retrain_triggers import exact

from . import argo_projects as ap
from . import netpol
from .cluster_pods import condition, substitute
from .schema_check import check_crd, check_definition

EVENTS = "argo-events/schema.json"
PREFIX = "io.argoproj.events.v1alpha1."
NAMES = {"object": "demo-trigger-churn-new-data", "topic": "demo-trigger-churn-labels-in",
         "pipeline": "demo-trigger-churn-after-features"}
SCORE = "demo-trigger-score-nightly-retrained"  # the batch endpoint's trigger

TRIGGERS = {
    "sources": {"clicks": {
        "type": "kafka", "bootstrapServers": "kafka-0.kafka.data.svc:9093, kafka-1.data.svc:9093",
        "topic": "labels", "batchSource": "events",
        "auth": {"sasl": {"mechanism": "SCRAM-SHA-512", "usernameSecret": "kafka-user",
                          "passwordSecret": "kafka-password"},
                 "tls": {"caSecret": "kafka-ca"}}}},
    "secrets": {"kafka-user": {"kubernetes": {"name": "kafka", "key": "user"}},
                "kafka-password": {"kubernetes": {"name": "kafka", "key": "password"}},
                "kafka-ca": {"kubernetes": {"name": "kafka", "key": "ca.crt"}},
                "minio-access": {"kubernetes": {"name": "minio", "key": "accesskey"}},
                "minio-secret": {"kubernetes": {"name": "minio", "key": "secretkey"}}},
    "models": {"churn": {"training": {"triggers": {
        "new-data": {"object": {"endpoint": "minio.storage.svc:9000", "bucket": "landing",
                                "prefix": "events/", "suffix": ".parquet",
                                "accessKeySecret": "minio-access",
                                "secretKeySecret": "minio-secret"},
                     "cooldown": "1h", "maxRuns": 4, "per": "1d"},
        "labels-in": {"topic": {"source": "clicks", "filter": {
            "field": "meta.kind", "values": ["labels.v1", "a (b)"]}}},
        "after-features": {"pipeline": {"name": "materialize"}}}}}},
    "serving": {"nightly": {"model": "churn", "mode": "batch", "hardware": "cpu-small",
                            "batch": {"schedule": "0 2 * * *", "input": "events",
                                      "output": "scores/", "triggers": {
                                          "retrained": {"pipeline": {"name": "train-churn"},
                                                        "cooldown": "6h"}}}}},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    resolved = ap.resolve(tmp_path_factory.mktemp("triggers"), ap.project(TRIGGERS))
    files = ap.emit(resolved)
    policies = [obj for f in network.emit(resolved) for obj in [f.content]]
    return resolved, files, policies


def _by_name(files, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in ap.objects(files, kind)}


def _sensor(files, kind: str) -> dict:
    return _by_name(files, "Sensor")["retrain-" + NAMES[kind].removeprefix("demo-")]


def test_each_trigger_has_an_event_source_and_sensor_argo_events_accepts(built):
    _, files, _ = built
    sources, sensors = _by_name(files, "EventSource"), _by_name(files, "Sensor")
    assert {*NAMES.values(), SCORE} < set(sources)
    for obj in [*sources.values(), *sensors.values()]:
        assert check_definition(obj, EVENTS, PREFIX + obj["kind"]) == [], obj["metadata"]
    minio = sources[NAMES["object"]]["spec"]["minio"]["trigger-churn-new-data"]
    assert minio["filter"] == {"prefix": "events/", "suffix": ".parquet"}
    assert minio["accessKey"] == {"name": "minio", "key": "accesskey"}
    assert minio["events"] == ["s3:ObjectCreated:*"] and minio["insecure"] is False
    kafka = sources[NAMES["topic"]]["spec"]["kafka"]["trigger-churn-labels-in"]
    assert kafka["url"] == "kafka-0.kafka.data.svc:9093,kafka-1.data.svc:9093"
    assert kafka["sasl"] == {"mechanism": "SCRAM-SHA-512",
                             "userSecret": {"name": "kafka", "key": "user"},
                             "passwordSecret": {"name": "kafka", "key": "password"}}
    assert kafka["tls"] == {"caCertSecret": {"name": "kafka", "key": "ca.crt"}}
    assert kafka["consumerGroup"]["groupName"] == "demo-trigger-churn-labels-in"
    watch = sources[NAMES["pipeline"]]["spec"]["resource"]["trigger-churn-after-features"]
    assert {s["key"]: s["value"] for s in watch["filter"]["labels"]} == {
        "workflows.argoproj.io/workflow-template": "materialize",
        "workflows.argoproj.io/phase": "Succeeded"}
    # the strict check can fail: a misspelt field of the bucket source is refused
    bad = json.loads(json.dumps(sources[NAMES["object"]]))
    bad["spec"]["minio"]["trigger-churn-new-data"]["prefix"] = "events/"
    assert check_definition(bad, EVENTS, PREFIX + "EventSource")


def _gjson(event: dict, path: str):
    value = event
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _passes(sensor: dict, event: dict) -> bool:
    """Argo Events' data filters of the Sensor's dependency: a string filter passes when one
    of its values, a Go regular expression (here Python's, for the escapes `exact` writes),
    matches the field."""
    (dep,) = sensor["spec"]["dependencies"]
    for f in dep.get("filters", {}).get("data", []):
        value = _gjson(event, f["path"])
        if value is None or not any(re.search(v, str(value)) for v in f["value"]):
            return False
    return True


def test_the_topic_filter_matches_the_values_exactly(built):
    _, files, _ = built
    sensor = _sensor(files, "topic")
    assert _passes(sensor, {"body": {"meta": {"kind": "labels.v1"}}})
    assert _passes(sensor, {"body": {"meta": {"kind": "a (b)"}}})
    for other in ("labelsXv1", "labels.v10", "old-labels.v1", "a b"):
        assert not _passes(sensor, {"body": {"meta": {"kind": other}}}), other
    assert not _passes(sensor, {"body": {"kind": "labels.v1"}})
    assert re.fullmatch(exact("x.y*"), "x.y*") and not re.search(exact("x.y*"), "xzyyy")
    # the other kinds pass every event their EventSource sends
    assert "filters" not in _sensor(files, "object")["spec"]["dependencies"][0]


def _run_cooldown(template: dict, last: str, now: int) -> str:
    values = {"inputs.parameters.last_start": last, "workflow.creationTimestamp.s": str(now)}
    command = [substitute(a, values) for a in template["container"]["command"]]
    assert command[0] == "python"
    done = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.strip()


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_an_event_starts_training_through_the_cooldown_gate(built, kind):
    resolved, files, _ = built
    sensor = _sensor(files, kind)
    (trigger,) = sensor["spec"]["triggers"]
    assert trigger["rateLimit"] == {"unit": "Minute", "requestsPerUnit": 1}
    gate = trigger["template"]["k8s"]["source"]["resource"]
    assert check_crd(gate, "argo-workflows/argoproj.io_workflows.yaml") == []
    templates = {t["name"]: t for t in gate["spec"]["templates"]}
    steps = templates[cooldown.ENTRYPOINT]["steps"]
    check = templates[cooldown.COOLDOWN]
    [parameter] = check["inputs"]["parameters"]
    key = parameter["valueFrom"]["configMapKeyRef"]["key"]
    assert key == NAMES[kind].removeprefix("demo-")
    written = yaml.safe_load(templates[cooldown.RECORD]["resource"]["manifest"])
    training = yaml.safe_load(templates[cooldown.START]["resource"]["manifest"])
    assert check_crd(training, "argo-workflows/argoproj.io_workflows.yaml") == []
    assert training["spec"]["workflowTemplateRef"] == {"name": "train-churn"}
    reason = {"object": "object-new-data", "topic": "topic-labels-in",
              "pipeline": "pipeline-after-features"}[kind]
    assert training["spec"]["arguments"]["parameters"] == [{"name": "reason", "value": reason}]
    assert training["metadata"]["labels"]["mlc.dev/trigger"] == reason
    lease = int(check["container"]["command"][-1])
    # new-data: cooldown 1h, 4 per day spaces starts 6h apart; the others: the defaults
    assert lease == {"object": 6 * 3600}.get(kind, 7 * 86400 // 3)
    config_map: dict[str, str] = {}

    def event(now: int) -> bool:
        last = config_map.get(key, parameter["valueFrom"]["default"])
        values = {"steps.cooldown.outputs.result": _run_cooldown(check, last, now),
                  "workflow.creationTimestamp.s": str(now)}
        if not condition(substitute(steps[1][0]["when"], values)):
            return False
        config_map.update({k: substitute(v, values) for k, v in written["data"].items()})
        return condition(substitute(steps[2][0]["when"], values))

    t0 = 1_800_000_000
    assert event(t0)
    assert not event(t0 + 60) and not event(t0 + lease - 1)
    assert config_map == {key: str(t0)}
    assert event(t0 + lease)
    # the drift check's gate keeps its own key and mutex: one does not hold off the other
    drift = _by_name(files, "Sensor")["retrain-churn-drift"]
    drift_gate = drift["spec"]["triggers"][0]["template"]["k8s"]["source"]["resource"]
    assert drift_gate["spec"]["synchronization"] != gate["spec"]["synchronization"]


def test_only_the_pipeline_watcher_gets_a_token_and_it_only_watches(built):
    resolved, files, _ = built
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    accounts = _by_name(files, "ServiceAccount")
    roles = _by_name(files, "Role")
    for obj in [*accounts.values(), *roles.values(), *ap.objects(files, "RoleBinding")]:
        kubernetes_validate.validate(obj, version, strict=True)
    sources = _by_name(files, "EventSource")
    account = {k: sources[n]["spec"]["template"]["serviceAccountName"]
               for k, n in NAMES.items()}
    assert account["object"] == account["topic"] == "demo-trigger-source"
    assert accounts["demo-trigger-source"]["automountServiceAccountToken"] is False
    assert "automountServiceAccountToken" not in accounts[account["pipeline"]]
    assert roles[account["pipeline"]]["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["list", "watch"]}]
    assert "demo-trigger-source" not in roles
    # every Sensor runs as the one that may only create Workflows
    sensors = {s["spec"]["template"]["serviceAccountName"]
               for s in ap.objects(files, "Sensor")}
    assert sensors == {"demo-sensor"}
    assert roles["demo-sensor"]["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]}]


def test_event_source_pods_reach_their_own_target_and_take_no_connections(built):
    resolved, _, policies = built
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for p in policies:
        kubernetes_validate.validate(p, kubernetes_validate.latest_version(), strict=True)
    ns = resolved.platform.namespace
    pods = {k: netpol.Pod(n, ns, {"eventsource-name": n}) for k, n in NAMES.items()}
    minio = netpol.Pod("minio", "storage", {})
    brokers = netpol.Pod("kafka", "data", {})
    bus = netpol.Pod("bus", ns, {"eventbus-name": "default"})
    api = netpol.Address(resolved.platform.network.kubernetes_api[0].split("/")[0])
    assert netpol.allowed(policies, pods["object"], minio, 9000)
    assert not netpol.allowed(policies, pods["object"], brokers, 9093)
    assert netpol.allowed(policies, pods["topic"], brokers, 9093)
    assert not netpol.allowed(policies, pods["topic"], minio, 9000)
    assert netpol.egress_allowed(policies, pods["pipeline"], api, 443)
    assert not netpol.egress_allowed(policies, pods["object"], api, 443)
    for pod in pods.values():
        assert netpol.allowed(policies, pod, bus, 4222)
    am = resolved.platform.network.alertmanager
    alertmanager = netpol.Pod("am", am.namespace or "monitoring", dict(am.pod_labels))
    alerts = netpol.Pod("alerts", ns, {"eventsource-name": "demo-alerts"})
    assert netpol.allowed(policies, alertmanager, alerts, 12000)
    for pod in pods.values():
        assert not netpol.allowed(policies, alertmanager, pod, 12000)


def test_a_project_without_triggers_gets_no_trigger_objects(tmp_path: Path):
    files = ap.emit(ap.resolve(tmp_path, ap.project()))
    names = [o["metadata"]["name"] for o in ap.objects(files, "EventSource")]
    assert names == ["demo-alerts"]


def test_a_batch_endpoint_scores_after_each_training_through_its_own_gate(built):
    resolved, files, _ = built
    sensor = _by_name(files, "Sensor")["score-trigger-score-nightly-retrained"]
    watch = _by_name(files, "EventSource")[SCORE]["spec"]["resource"]
    assert {s["key"]: s["value"] for s in watch["trigger-score-nightly-retrained"]["filter"][
        "labels"]}["workflows.argoproj.io/workflow-template"] == "train-churn"
    gate = sensor["spec"]["triggers"][0]["template"]["k8s"]["source"]["resource"]
    templates = {t["name"]: t for t in gate["spec"]["templates"]}
    scoring = yaml.safe_load(templates[cooldown.START]["resource"]["manifest"])
    assert check_crd(scoring, "argo-workflows/argoproj.io_workflows.yaml") == []
    assert scoring["spec"]["workflowTemplateRef"] == {"name": "score-nightly"}
    assert scoring["spec"]["arguments"]["parameters"] == [
        {"name": "reason", "value": "pipeline-retrained"}]
    assert scoring["metadata"]["labels"]["app.kubernetes.io/component"] == "scoring"
    # the scoring template declares the parameter the gate sets (Argo refuses an unknown one)
    template = _by_name(files, "WorkflowTemplate")["score-nightly"]
    declared = {p["name"]: p for p in template["spec"]["arguments"]["parameters"]}
    assert declared["reason"]["value"] == "manual"
    lease = int(templates[cooldown.COOLDOWN]["container"]["command"][-1])
    assert lease == 7 * 86400 // 3  # 3 per 7d spaces starts wider than the 6h cooldown
