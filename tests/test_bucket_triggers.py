"""Bucket triggers on AWS S3 (its notifications in an SQS queue) and GCS (its Pub/Sub
notifications), each through an EventSource of its own and the drift gate's cooldown.

The EventSources and Sensors are checked against Argo Events' published schema; the Sensor's
data filters are applied, as Argo Events applies them (a gjson path, a Go regular expression
that Python reads alike for what mlc writes), to the events the `sqs` and `pubsub` sources
send for the notifications S3 and GCS publish; the gate Workflow's cooldown step runs as a
local process; the identities and NetworkPolicies are checked as the cluster reads them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote_plus

import pytest
import yaml

from mlc.compiler.backends import network
from mlc.compiler.backends.argo import cooldown

from . import argo_projects as ap
from . import netpol
from .cluster_pods import condition, substitute
from .schema_check import check_crd, check_definition
from .test_event_triggers import _run_cooldown

EVENTS = "argo-events/schema.json"
PREFIX = "io.argoproj.events.v1alpha1."
ROLE = "arn:aws:iam::123456789012:role/landing-events"
GSA = "landing-reader@acme-data.iam.gserviceaccount.com"
KEYS = {"s3-keys": "demo-trigger-churn-s3-keys", "s3-irsa": "demo-trigger-churn-s3-irsa",
        "s3-pod": "demo-trigger-churn-s3-pod", "gcs-key": "demo-trigger-churn-gcs-key",
        "gcs-wi": "demo-trigger-churn-gcs-wi"}

S3 = {"store": "s3", "bucket": "landing", "queue": "landing-events", "region": "eu-west-1"}
GCS = {"store": "gcs", "bucket": "landing", "project": "acme-data",
       "subscription": "landing-mlc"}
TRIGGERS = {
    "secrets": {"aws-access": {"kubernetes": {"name": "aws", "key": "access"}},
                "aws-secret": {"kubernetes": {"name": "aws", "key": "secret"}},
                "gcp-key": {"kubernetes": {"name": "gcp", "key": "key.json"}}},
    "models": {"churn": {"training": {"triggers": {
        "s3-keys": {"object": {**S3, "prefix": "dt=2026/", "suffix": ".parquet",
                               "accessKeySecret": "aws-access",
                               "secretKeySecret": "aws-secret"},
                    "cooldown": "1h", "maxRuns": 4, "per": "1d"},
        "s3-irsa": {"object": {**S3, "awsRoleArn": ROLE}},
        "s3-pod": {"object": {**S3, "podIdentity": True}},
        "gcs-key": {"object": {**GCS, "prefix": "events/", "suffix": ".parquet",
                               "credentialsSecret": "gcp-key"}},
        "gcs-wi": {"object": {**GCS, "gcpServiceAccount": GSA}}}}}},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    resolved = ap.resolve(tmp_path_factory.mktemp("buckets"), ap.project(TRIGGERS))
    files = ap.emit(resolved)
    policies = [f.content for f in network.emit(resolved)]
    return resolved, files, policies


def _by_name(files, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in ap.objects(files, kind)}


def _source(files, trigger: str) -> dict:
    return _by_name(files, "EventSource")[KEYS[trigger]]


def _sensor(files, trigger: str) -> dict:
    return _by_name(files, "Sensor")["retrain-" + KEYS[trigger].removeprefix("demo-")]


def test_s3_and_gcs_triggers_get_sources_and_sensors_argo_events_accepts(built):
    _, files, _ = built
    for trigger in KEYS:
        for obj in (_source(files, trigger), _sensor(files, trigger)):
            assert check_definition(obj, EVENTS, PREFIX + obj["kind"]) == [], trigger
    event = "trigger-churn-s3-keys"
    sqs = _source(files, "s3-keys")["spec"]["sqs"][event]
    assert sqs == {"region": "eu-west-1", "queue": "landing-events", "waitTimeSeconds": 20,
                   "jsonBody": True, "accessKey": {"name": "aws", "key": "access"},
                   "secretKey": {"name": "aws", "key": "secret"}}
    irsa = _source(files, "s3-irsa")["spec"]["sqs"]["trigger-churn-s3-irsa"]
    assert "accessKey" not in irsa and "roleARN" not in irsa  # IRSA: the pod's own identity
    pubsub = _source(files, "gcs-key")["spec"]["pubSub"]["trigger-churn-gcs-key"]
    # an existing subscription and no topic: the source creates nothing, needs only consume
    assert pubsub == {"projectID": "acme-data", "subscriptionID": "landing-mlc",
                      "jsonBody": True, "credentialSecret": {"name": "gcp", "key": "key.json"}}
    assert "credentialSecret" not in _source(files, "gcs-wi")["spec"]["pubSub"][
        "trigger-churn-gcs-wi"]
    # the strict check can fail: a field the sqs source does not have is refused
    bad = json.loads(json.dumps(_source(files, "s3-keys")))
    bad["spec"]["sqs"][event]["bucket"] = "landing"
    assert check_definition(bad, EVENTS, PREFIX + "EventSource")


def _path(event, path: str):
    """gjson's plain paths: names into objects, numbers into arrays."""
    value = event
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def _passes(sensor: dict, event: dict) -> bool:
    (dep,) = sensor["spec"]["dependencies"]
    filters = dep["filters"]["data"]
    assert filters, "a cloud bucket's Sensor filters its notifications"
    for f in filters:
        value = _path(event, f["path"])
        if value is None or not any(re.search(v, str(value)) for v in f["value"]):
            return False
    return True


def _s3_event(key: str, bucket: str = "landing", name: str = "ObjectCreated:Put") -> dict:
    """What the `sqs` source sends for S3's notification: the message's JSON as the body, the
    key URL-encoded as S3 writes it (a space as `+`)."""
    record = {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
              "eventName": name, "s3": {"bucket": {"name": bucket},
                                        "object": {"key": quote_plus(key, safe="/"),
                                                   "size": 1024}}}
    return {"messageId": "m-1", "messageAttributes": {}, "body": {"Records": [record]}}


def _gcs_event(name: str, bucket: str = "landing", kind: str = "OBJECT_FINALIZE") -> dict:
    """What the `pubsub` source sends for GCS's notification (payload JSON_API_V1): the
    object's metadata as the body, the event in the message's attributes."""
    return {"id": "1", "publishTime": "2026-01-01T00:00:00Z",
            "body": {"kind": "storage#object", "bucket": bucket, "name": name},
            "attributes": {"eventType": kind, "bucketId": bucket, "objectId": name,
                           "payloadFormat": "JSON_API_V1"}}


def test_the_s3_sensor_starts_on_new_objects_of_its_bucket_under_prefix_and_suffix(built):
    _, files, _ = built
    sensor = _sensor(files, "s3-keys")
    assert _passes(sensor, _s3_event("dt=2026/part 1.parquet"))
    assert _passes(sensor, _s3_event("dt=2026/a.parquet", name="ObjectCreated:CompleteMultip"
                                     "artUpload"))
    # S3 may write `=` as itself or percent-encoded, hex digits in either case
    assert _passes(sensor, _s3_event("dt=2026/x.parquet") | {"body": {"Records": [
        _s3_event("x")["body"]["Records"][0] | {"s3": {"bucket": {"name": "landing"},
                                                       "object": {"key": "dt%3d2026/x.parquet"}}}
    ]}})
    for other in (_s3_event("dt=2025/a.parquet"), _s3_event("dt=2026/a.parquet.tmp"),
                  _s3_event("old/dt=2026/a.parquet"), _s3_event("dt=2026/a.parquet", "other"),
                  _s3_event("dt=2026/a.parquet", name="ObjectRemoved:Delete"),
                  {"body": {"Service": "Amazon S3", "Event": "s3:TestEvent"}}):
        assert not _passes(sensor, other), other
    # no prefix or suffix: every new object of the bucket, and still only of that bucket
    plain = _sensor(files, "s3-irsa")
    assert _passes(plain, _s3_event("anything/at all"))
    assert not _passes(plain, _s3_event("x", bucket="landing2"))


def test_the_gcs_sensor_starts_on_finalized_objects_of_its_bucket(built):
    _, files, _ = built
    sensor = _sensor(files, "gcs-key")
    assert _passes(sensor, _gcs_event("events/2026 01.parquet"))
    for other in (_gcs_event("events/a.parquet", kind="OBJECT_DELETE"),
                  _gcs_event("events/a.parquet", kind="OBJECT_METADATA_UPDATE"),
                  _gcs_event("events/a.parquet", bucket="landing-2"),
                  _gcs_event("eventsX/a.parquet"), _gcs_event("events/a.parquetX"),
                  _gcs_event("x/events/a.parquet")):
        assert not _passes(sensor, other), other
    # overlapping prefix and suffix are each checked on their own, as MinIO does
    assert _passes(sensor, _gcs_event("events/.parquet"))


@pytest.mark.parametrize("trigger", ["s3-keys", "gcs-wi"])
def test_a_bucket_event_starts_training_through_the_cooldown_gate(built, trigger):
    _, files, _ = built
    (start,) = _sensor(files, trigger)["spec"]["triggers"]
    assert start["rateLimit"] == {"unit": "Minute", "requestsPerUnit": 1}
    gate = start["template"]["k8s"]["source"]["resource"]
    assert check_crd(gate, "argo-workflows/argoproj.io_workflows.yaml") == []
    templates = {t["name"]: t for t in gate["spec"]["templates"]}
    steps = templates[cooldown.ENTRYPOINT]["steps"]
    check = templates[cooldown.COOLDOWN]
    [parameter] = check["inputs"]["parameters"]
    key = parameter["valueFrom"]["configMapKeyRef"]["key"]
    assert key == KEYS[trigger].removeprefix("demo-")
    training = yaml.safe_load(templates[cooldown.START]["resource"]["manifest"])
    assert training["spec"]["workflowTemplateRef"] == {"name": "train-churn"}
    assert training["spec"]["arguments"]["parameters"] == [
        {"name": "reason", "value": f"object-{trigger}"}]
    written = yaml.safe_load(templates[cooldown.RECORD]["resource"]["manifest"])
    lease = int(check["container"]["command"][-1])
    assert lease == {"s3-keys": 6 * 3600}.get(trigger, 7 * 86400 // 3)
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
    assert event(t0 + lease)


def test_a_cloud_identity_is_an_account_of_the_triggers_own_without_a_token(built):
    _, files, _ = built
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    accounts = _by_name(files, "ServiceAccount")
    for obj in accounts.values():
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    used = {t: _source(files, t)["spec"]["template"]["serviceAccountName"] for t in KEYS}
    # keys in Secrets: the shared account with nothing; an identity: one account each
    assert used["s3-keys"] == used["gcs-key"] == "demo-trigger-source"
    assert {used[t] for t in ("s3-irsa", "s3-pod", "gcs-wi")} == {
        KEYS["s3-irsa"], KEYS["s3-pod"], KEYS["gcs-wi"]}
    notes = {t: accounts[used[t]]["metadata"]["annotations"] for t in KEYS}
    assert notes["s3-irsa"]["eks.amazonaws.com/role-arn"] == ROLE
    assert notes["gcs-wi"]["iam.gke.io/gcp-service-account"] == GSA
    assert not {"eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account"} & {
        *notes["s3-pod"], *notes["s3-keys"]}
    for t in KEYS:
        assert accounts[used[t]]["automountServiceAccountToken"] is False
    roles = _by_name(files, "Role")
    assert not set(used.values()) & set(roles)


def test_bucket_sources_reach_their_cloud_api_and_identity_only(built):
    resolved, _, policies = built
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for p in policies:
        kubernetes_validate.validate(p, kubernetes_validate.latest_version(), strict=True)
    ns = resolved.platform.namespace
    pods = {t: netpol.Pod(n, ns, {"eventsource-name": n}) for t, n in KEYS.items()}
    cloud = netpol.Address("52.95.1.1")  # an address of the cloud's API, outside
    agent, metadata = netpol.Address("169.254.170.23"), netpol.Address("169.254.169.254")
    minio = netpol.Pod("minio", "storage", {})
    bus = netpol.Pod("bus", ns, {"eventbus-name": "default"})
    for t, pod in pods.items():
        assert netpol.egress_allowed(policies, pod, cloud, 443), t
        assert not netpol.egress_allowed(policies, pod, cloud, 80), t
        assert not netpol.allowed(policies, pod, minio, 9000), t
        assert netpol.allowed(policies, pod, bus, 4222), t
    assert netpol.egress_allowed(policies, pods["s3-pod"], agent, 80)
    assert not netpol.egress_allowed(policies, pods["s3-irsa"], agent, 80)
    assert netpol.egress_allowed(policies, pods["gcs-wi"], metadata, 80)
    assert not netpol.egress_allowed(policies, pods["gcs-key"], metadata, 80)
    assert not netpol.egress_allowed(policies, pods["s3-keys"], metadata, 80)
    # no connection comes in
    other = netpol.Pod("x", ns, {})
    for pod in pods.values():
        assert not netpol.allowed(policies, other, pod, 12000)


def _errors(tmp_path: Path, trigger: dict, secrets: dict | None = None):
    doc = ap.project(TRIGGERS)
    doc["models"]["churn"]["training"]["triggers"] = {"t": trigger}
    doc["secrets"].update(secrets or {})
    _, diagnostics = ap.check(tmp_path, doc)
    return [(d.code, ".".join(str(p) for p in d.path[-2:])) for d in diagnostics.errors]


@pytest.mark.parametrize("settings, expected", [
    ({**S3, "endpoint": "s3.amazonaws.com", "podIdentity": True}, ("MLC583", "object.endpoint")),
    ({**S3, "subscription": "x-sub", "podIdentity": True}, ("MLC583", "object.subscription")),
    ({"store": "s3", "bucket": "landing", "region": "eu-west-1", "podIdentity": True},
     ("MLC583", "t.object")),
    ({**GCS, "insecure": True, "podIdentity": True}, ("MLC583", "object.insecure")),
    ({**GCS, "awsRoleArn": ROLE}, ("MLC583", "object.awsRoleArn")),
    ({"store": "minio", "bucket": "landing", "queue": "q", "accessKeySecret": "aws-access",
      "secretKeySecret": "aws-secret", "endpoint": "minio.storage.svc:9000"},
     ("MLC583", "object.queue")),
    (S3, ("MLC584", "t.object")),
    ({**S3, "awsRoleArn": ROLE, "podIdentity": True}, ("MLC584", "object.podIdentity")),
    ({**S3, "accessKeySecret": "aws-access"}, ("MLC584", "object.accessKeySecret")),
    ({**GCS, "credentialsSecret": "gcp-key", "gcpServiceAccount": GSA},
     ("MLC584", "object.gcpServiceAccount")),
    ({**S3, "queue": "landing-events.fifo", "podIdentity": True}, ("MLC578", "object.queue")),
    ({**GCS, "credentialsSecret": "gcp-nokey"}, ("MLC201", "object.credentialsSecret")),
])
def test_what_argo_events_cannot_do_with_a_bucket_is_a_located_error(tmp_path, settings,
                                                                     expected):
    errors = _errors(tmp_path, {"object": settings})
    assert expected in errors, errors


def test_the_minio_form_is_unchanged_by_the_cloud_forms(tmp_path):
    minio = {"object": {"endpoint": "minio.storage.svc:9000", "bucket": "landing",
                        "accessKeySecret": "aws-access", "secretKeySecret": "aws-secret"}}
    assert _errors(tmp_path, minio) == []
