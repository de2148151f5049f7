"""The drift webhook that starts retraining: authenticated, size-limited, rate-limited, and a
cooldown that no forged or earlier run can hold by squatting on a Workflow name.

The gate Workflow's cooldown step is run here as a local process with its own command; the
ConfigMap it reads (through Argo's parameter from a ConfigMap key, with its default) and the
record step writes is a dict, so that a sequence of alerts shows which start a training run.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from mlc.compiler.backends import BACKENDS
from mlc.compiler.backends.argo import cooldown
from mlc.compiler.backends.kustomize import is_manifest

from . import argo_projects as ap
from .conftest import ROOT
from .schema_check import check_crd, check_definition

EVENTS = "argo-events/schema.json"


@pytest.fixture(scope="module")
def prod() -> dict[str, list[dict]]:
    """Every backend's files of the example's prod environment, each as a list of objects."""
    resolved = ap.resolve_dir(ROOT, "prod")
    return {f.path: (list(f.content) if isinstance(f.content, (list, tuple)) else [f.content])
            for backend in BACKENDS for f in backend(resolved)
            if is_manifest(f)}


def _one(files, kind: str) -> dict:
    (obj,) = ap.objects(files, kind)
    return obj


def _gate(files) -> dict:
    return _one(files, "Sensor")["spec"]["triggers"][0]["template"]["k8s"]["source"]["resource"]


def _template(workflow: dict, name: str) -> dict:
    return next(t for t in workflow["spec"]["templates"] if t["name"] == name)


def test_webhook_requires_the_token_that_alertmanager_sends(prod):
    hook = _one(prod, "EventSource")["spec"]["webhook"]["fraud-inputs"]
    secret = {"name": "fraud-detection-drift-webhook-token", "key": "token"}
    assert hook["authSecret"] == secret
    assert hook["maxPayloadSize"] == 65536
    config = _one(prod, "AlertmanagerConfig")
    receiver = next(r for r in config["spec"]["receivers"]
                    if r["name"] == "mlc.retrain.fraud-inputs")
    assert receiver["webhookConfigs"][0]["httpConfig"]["authorization"] == {
        "type": "Bearer", "credentials": secret}
    # the Secret is delivered like every other: an ExternalSecret syncs it into the namespace
    synced = {e["spec"]["target"]["name"]: e for e in ap.objects(prod, "ExternalSecret")}
    assert synced[secret["name"]]["spec"]["data"][0]["secretKey"] == "token"


def test_sensor_and_event_source_follow_the_argo_events_schema(prod):
    for kind in ("Sensor", "EventSource"):
        assert check_definition(_one(prod, kind), EVENTS,
                                f"io.argoproj.events.v1alpha1.{kind}") == []
    trigger = _one(prod, "Sensor")["spec"]["triggers"][0]
    assert trigger["rateLimit"] == {"unit": "Minute", "requestsPerUnit": 1}
    # the strict check can fail: a misspelt webhook field is refused
    bad = yaml.safe_load(yaml.safe_dump(_one(prod, "EventSource")))
    bad["spec"]["webhook"]["fraud-inputs"]["maxPayload"] = 1
    assert check_definition(bad, EVENTS, "io.argoproj.events.v1alpha1.EventSource")


def test_no_run_has_a_fixed_name(prod):
    """Before, a Workflow created under the drift run's fixed name (by anyone, or by an earlier
    run) made every alert fail with AlreadyExists for the lease; now both names are generated."""
    gate = _gate(prod)
    training = yaml.safe_load(_template(gate, cooldown.START)["resource"]["manifest"])
    for wf in (gate, training):
        assert "name" not in wf["metadata"] and wf["metadata"]["generateName"].endswith("-")
        assert check_crd(wf, "argo-workflows/argoproj.io_workflows.yaml") == []
    assert training["spec"]["workflowTemplateRef"] == {"name": "train-fraud-classifier"}
    assert training["spec"]["arguments"]["parameters"] == [{"name": "reason", "value": "drift"}]
    assert gate["spec"]["synchronization"]["mutexes"] == [{"name": "drift-gate-fraud-inputs"}]
    # the gate's identity may create Workflows and report step results, nothing more
    roles = {r["metadata"]["name"]: r for r in ap.objects(prod, "Role")}
    assert roles[gate["spec"]["serviceAccountName"]]["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
         "verbs": ["create", "patch"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"],
         "resourceNames": ["fraud-detection-drift-cooldown"]}]


def _substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        return values[match.group(1)]
    return re.sub(r"\{\{([^}]+)\}\}", one, text)


def _when(expression: str) -> bool:
    """Argo's `when` for the one form the gate uses: `a == b` (govaluate equality)."""
    left, _, right = expression.partition(" == ")
    assert left and right, expression
    return left.strip() == right.strip()


def _run_cooldown(template: dict, last: str, now: int) -> str:
    """The cooldown step's own command, as a local process, with Argo's substitutions."""
    values = {"inputs.parameters.last_start": last, "workflow.creationTimestamp.s": str(now)}
    command = [_substitute(a, values) for a in template["container"]["command"]]
    assert command[0] == "python"
    done = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.strip()  # Argo's outputs.result: stdout, trailing newline trimmed


def test_cooldown_starts_at_most_one_run_per_lease(prod):
    gate = _gate(prod)
    cooldown_t = _template(gate, cooldown.COOLDOWN)
    record, start = _template(gate, cooldown.RECORD), _template(gate, cooldown.START)
    steps = _template(gate, cooldown.ENTRYPOINT)["steps"]
    assert [[s["name"] for s in group] for group in steps] == [["cooldown"], ["record"],
                                                               ["start"]]
    [parameter] = cooldown_t["inputs"]["parameters"]
    source = parameter["valueFrom"]["configMapKeyRef"]
    assert source == {"name": "fraud-detection-drift-cooldown", "key": "fraud-inputs"}
    written = yaml.safe_load(record["resource"]["manifest"])
    assert written["metadata"]["name"] == source["name"]
    assert record["resource"]["action"] == "patch"
    lease = int(cooldown_t["container"]["command"][-1])
    assert lease == 7 * 86400 // 2  # maxRuns 2 per 7d spaces starts wider than cooldown 24h
    config_map: dict[str, str] = {}  # the ConfigMap's data, as the record steps leave it

    def alert(now: int) -> bool:
        """One gate Workflow, created at `now`: the steps in order, as Argo runs them."""
        last = config_map.get(source["key"], parameter["valueFrom"]["default"])
        result = _run_cooldown(cooldown_t, last, now)
        values = {"steps.cooldown.outputs.result": result,
                  "workflow.creationTimestamp.s": str(now)}
        if not _when(_substitute(steps[1][0]["when"], values)):
            return False
        config_map.update({k: _substitute(v, values) for k, v in written["data"].items()})
        return _when(_substitute(steps[2][0]["when"], values))

    t0 = 1_800_000_000
    assert alert(t0)  # the first alert starts training
    assert not alert(t0 + 3600)  # within the lease: the gate ends, nothing starts
    assert not alert(t0 + lease - 1)
    assert config_map == {"fraud-inputs": str(t0)}  # a refused gate records nothing
    assert alert(t0 + lease)  # the lease has passed: a real alert trains again
    assert not alert(t0 + lease + 60)
    assert start["resource"]["action"] == "create"


def test_the_cooldown_config_map_is_the_gate_s_alone(prod):
    (cm,) = [o for o in ap.objects(prod, "ConfigMap")
             if o["metadata"]["name"] == "fraud-detection-drift-cooldown"]
    assert "data" not in cm  # Argo CD leaves the starts the gates write alone
    assert cm["metadata"]["labels"]["workflows.argoproj.io/configmap-type"] == "Parameter"
    rules = [r for role in ap.objects(prod, "Role") for r in role["rules"]
             if "configmaps" in r["resources"]]
    assert rules == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"],
                      "resourceNames": ["fraud-detection-drift-cooldown"]}]
