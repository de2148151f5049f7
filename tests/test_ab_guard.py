"""A/B guardrails (`rollout.gates` on an `ab` rollout): the guard CronWorkflow, the override
the routers read, and the forms that cannot have them.

The objects: the CronWorkflow, its Role (one ConfigMap, by name), the override ConfigMap,
the router's mount and the Argo CD Application, each against its upstream schema.

The mechanisms on their own: what the router does with every kind of override file, and how
the guard counts failed and inconclusive runs.

For real (slow): tests/test_ab_guard_real.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hera.workflows import models as hera_models

from mlc import metrics
from mlc.compiler.backends import argocd
from mlc.compiler.backends.serving import ab_guard
from mlc.compiler.diagnostics import Diagnostics
from mlc.runtime import ab_guard as guard_runtime
from mlc.runtime.serve import weights_override as wo
from mlc.runtime.serve.router import Assigner, RouterVariant

from . import schema_check
from .conftest import write_project
from .test_serving import Built, build, diagnostic_paths, project_text

NAMESPACE = "scoring-default"
WEIGHTS = {"control": 50, "treatment": 30, "other": 20}
GATES = {"maxErrorRate": 0.05, "maxLatencyP99": "2s", "interval": "1m", "failureLimit": 1}


def shop(**extra: Any) -> dict[str, Any]:
    return {"model": "scorer", **extra, "rollout": {
        "strategy": "ab", "assignment": {"header": "X-User-Id"}, "gates": GATES,
        "variants": [{"name": n, "weight": w, **({} if n == "control" else
                                                  {"alias": "challenger"})}
                     for n, w in WEIGHTS.items()]}}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("guarded"), {"shop": shop()})


def _router_config(built: Built) -> dict[str, Any]:
    return json.loads(built.named("ConfigMap", "shop-serve")["data"]["router.json"])


# ---------------------------------------------------------------------------------------
# The objects


def test_a_guarded_ab_endpoint_gets_the_guard_and_its_override(built):
    guard = built.project.endpoints["shop"].rollout.ab_guard
    assert guard is not None and guard.baseline == "control"
    assert guard.guarded == ["other", "treatment"] and guard.schedule == "* * * * *"
    assert {"delivery/cronworkflow-shop.yaml", "delivery/configmap-shop.yaml",
            "delivery/rbac-shop.yaml"} <= set(built.files)
    (cm,) = built.files["delivery/configmap-shop.yaml"]
    # no data in git: Argo CD's sync leaves the guard's override alone
    assert "data" not in cm and cm["metadata"]["name"] == "shop-ab-guard"
    router = _router_config(built)
    assert router["guard"] == {
        "override": "/etc/mlc-ab-guard/override.json", "baseline": "control",
        "models": {v.name: v.model_uri for v in built.project.endpoints["shop"].rollout.variants},
        "poll_seconds": ab_guard.POLL_SECONDS}
    deployment = built.named("Deployment", "shop-router")
    spec = deployment["spec"]["template"]["spec"]
    assert {"name": "ab-guard", "configMap": {"name": "shop-ab-guard", "optional": True}} in \
        spec["volumes"]
    assert {"name": "ab-guard", "mountPath": "/etc/mlc-ab-guard", "readOnly": True} in \
        spec["containers"][0]["volumeMounts"]
    # only the router reads it: the variants' pods do not mount it
    variant = built.named("Deployment", "shop-treatment")["spec"]["template"]["spec"]
    assert all(v["name"] != "ab-guard" for v in variant["volumes"])
    settings = json.loads(built.named("ConfigMap", "shop-serve")["data"][ab_guard.GUARD_KEY])
    assert sorted(settings["variants"]) == ["other", "treatment"]  # never the baseline
    assert [g["name"] for g in settings["gates"]] == ["error-rate", "latency-p99"]
    for g in settings["gates"]:
        assert 'variant="{{variant}}"' in g["query"] and "mlc_router_" in g["query"]


def test_the_cron_workflow_matches_the_argo_schema_and_round_trips_through_hera(built):
    (cron,) = built.files["delivery/cronworkflow-shop.yaml"]
    assert schema_check.check_crd(cron, "argo-workflows/argoproj.io_cronworkflows.yaml") == []
    assert hera_models.CronWorkflow.parse_obj(cron).dict(by_alias=True, exclude_none=True) == cron
    spec = cron["spec"]
    assert spec["schedules"] == ["* * * * *"] and spec["concurrencyPolicy"] == "Forbid"
    wf = spec["workflowSpec"]
    assert wf["serviceAccountName"] == "shop-ab-guard"
    t = {x["name"]: x for x in wf["templates"]}
    assert [s[0]["name"] for s in t["guard"]["steps"]] == ["measure", "write"]
    measure = t["measure"]
    assert measure["automountServiceAccountToken"] is False  # it reads Prometheus only
    assert measure["container"]["securityContext"]["readOnlyRootFilesystem"] is True
    (state,) = measure["inputs"]["parameters"]
    assert state["valueFrom"]["configMapKeyRef"] == {"name": "shop-ab-guard",
                                                     "key": "override.json"}
    patch = yaml.safe_load(t["write"]["resource"]["manifest"])
    assert patch == {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "shop-ab-guard"},
                     "data": {"override.json": "{{inputs.parameters.override}}"}}


def test_the_guard_may_patch_only_its_one_config_map(built):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = built.files["delivery/rbac-shop.yaml"]
    role = next(o for o in docs if o["kind"] == "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["shop-ab-guard"],
         "verbs": ["get", "patch"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
         "verbs": ["create", "patch"]}]
    binding = next(o for o in docs if o["kind"] == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "shop-ab-guard",
                                    "namespace": NAMESPACE}]
    version = kubernetes_validate.latest_version()
    for obj in [*docs, *built.files["delivery/configmap-shop.yaml"]]:
        kubernetes_validate.validate(obj, version, strict=True)


def test_argo_cd_leaves_the_override_to_the_guard(built):
    app = argocd.application(built.project)
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert app["spec"]["ignoreDifferences"] == [
        {"group": "", "kind": "ConfigMap", "name": "shop-ab-guard", "namespace": NAMESPACE,
         "jsonPointers": ["/data"]}]
    assert schema_check.check_crd(app, "argo-cd/application-crd.yaml") == []


def _codes(tmp_path: Path, endpoint: dict[str, Any], platform: dict | None = None
           ) -> dict[str, list[str]]:
    return diagnostic_paths(tmp_path, {"e": endpoint}, platform)


@pytest.mark.parametrize(("form", "code"), [
    ({"mode": "serverless", "assignment": None}, "MLC340"),
    ({"kserve": True, "assignment": None}, "MLC340"),
], ids=["knative-route", "kserve-pods"])
def test_forms_without_the_router_are_refused(tmp_path, form, code):
    endpoint = shop(**{k: v for k, v in form.items() if k != "assignment"})
    del endpoint["rollout"]["assignment"]
    assert _codes(tmp_path, endpoint).get(code) == ["serving.e.rollout.gates"]


def test_a_gateway_split_is_refused_unless_the_router_splits(tmp_path):
    gateway = {"gateway": {"api": "gateway-api", "name": "public", "namespace": "edge"}}
    endpoint = shop()
    del endpoint["rollout"]["assignment"]
    assert _codes(tmp_path / "a", endpoint, gateway).get("MLC340") == ["serving.e.rollout.gates"]
    assert "MLC340" not in _codes(tmp_path / "b", shop(), gateway)  # the gateway -> the router


# ---------------------------------------------------------------------------------------
# The router's override, on its own

SETTINGS = wo.GuardSettings(override="unused", baseline="control",
                            models={"control": "m/1", "treatment": "m/2", "other": "m/3"})
LIVE = list(WEIGHTS)


@pytest.mark.parametrize(("text", "stopped", "problems"), [
    (None, set(), [wo.MISSING]),
    ("{not json", set(), [wo.MALFORMED]),
    ('{"stopped": []}', set(), [wo.MALFORMED]),
    ("", set(), []),  # the ConfigMap's key before the first run: no override
    ('{"stopped": {"treatment": {"model": "m/2"}}}', {"treatment"}, []),
    ('{"stopped": {"ghost": {"model": "m/9"}, "treatment": {"model": "m/2"}}}',
     {"treatment"}, [wo.UNKNOWN]),
    ('{"stopped": {"control": {"model": "m/1"}}}', set(), [wo.BASELINE]),
    # stopped on the model the variant served before ml.yaml gave it a new one: it serves
    ('{"stopped": {"treatment": {"model": "m/1"}}}', set(), []),
], ids=["missing", "malformed", "wrong-shape", "empty", "stopped", "unknown", "baseline",
        "another-model"])
def test_what_the_router_makes_of_an_override(text, stopped, problems):
    assert wo.stopped_variants(text, SETTINGS, LIVE) == (frozenset(stopped), problems)


def test_an_override_never_stops_every_variant():
    settings = wo.GuardSettings("unused", "control", {"treatment": "m/2", "other": "m/3"})
    text = '{"stopped": {"treatment": {"model": "m/2"}, "other": {"model": "m/3"}}}'
    assert wo.stopped_variants(text, settings, ["treatment", "other"]) == (
        frozenset(), [wo.NONE_LEFT])


def _variants() -> tuple[RouterVariant, ...]:
    return tuple(RouterVariant(n, w, f"http://{n}") for n, w in WEIGHTS.items())


def test_a_stopped_variant_gets_nothing_and_the_other_keys_stay(tmp_path):
    override = tmp_path / "override.json"
    now = [0.0]
    guarded = wo.GuardedAssigner(Assigner(_variants()), wo.GuardSettings(
        str(override), "control", dict(SETTINGS.models), poll_seconds=5),
        "shop", clock=lambda: now[0])
    keys = [f"user-{i}" for i in range(20_000)]
    before = {k: guarded.assign(k).name for k in keys}
    assert guarded.problems[wo.MISSING] == 1 and not guarded.stopped
    override.write_text('{"stopped": {"treatment": {"model": "m/2"}}}')
    assert guarded.assign(keys[0]).name == before[keys[0]]  # read again only after the poll
    now[0] = 6.0
    after = {k: guarded.assign(k).name for k in keys}
    assert guarded.stopped == {"treatment"}
    assert "treatment" not in after.values()
    assert all(after[k] == before[k] for k in keys if before[k] != "treatment")
    # the stopped arm's keys spread over the others by their weights: 50/70 and 20/70
    moved = [after[k] for k in keys if before[k] == "treatment"]
    assert abs(moved.count("control") / len(moved) - 50 / 70) < 0.03
    share = list(after.values()).count("control") / len(keys)
    assert abs(share - 50 / 70) < 0.02
    # malformed now: ml.yaml's weights again, the problem counted once
    override.write_text("{oops")
    now[0] = 12.0
    assert {guarded.assign(k).name for k in keys} == set(WEIGHTS)
    guarded.assign(keys[1])
    assert guarded.problems[wo.MALFORMED] == 1


def test_the_router_exports_every_variants_series_from_zero():
    """A series that appears with its first request hides that request from rate(): the
    guard would not see a new variant's first burst of 5xx."""
    from prometheus_client.parser import text_string_to_metric_families

    from mlc.runtime.serve.router import RouterApp, RouterSettings

    app = RouterApp(RouterSettings.from_config({
        "endpoint": "shop", "timeout_seconds": 1,
        "variants": [{"name": n, "weight": w, "url": "http://x"} for n, w in WEIGHTS.items()]},
        env={}))
    samples = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(
        app.metrics.render().decode()) for s in f.samples]
    requests = {(lb["variant"], lb["code"]) for n, lb, _ in samples
                if n == "mlc_router_requests_total"}
    assert {(v, c) for v in WEIGHTS for c in ("200", "500", "502", "503")} <= requests
    counts = {lb["variant"] for n, lb, _ in samples
              if n == "mlc_router_request_duration_seconds_count"}
    assert counts == set(WEIGHTS)
    assert all(v == 0 for n, _, v in samples if n.startswith("mlc_router_request"))


# ---------------------------------------------------------------------------------------
# The guard's counting, on its own

CONFIG = {"endpoint": "shop", "prometheus": "http://prometheus", "failureLimit": 1,
          "variants": {"treatment": "m/2", "other": "m/3"},
          "placeholders": {"variant": "{{variant}}"},
          "gates": [{"name": "error-rate", "query": 'q{variant="{{variant}}"}', "max": 0.05}]}


def _answers(values: dict[str, float | None]):
    def run_query(url: str, promql: str) -> dict:
        variant = promql.split('"')[1]
        v = values[variant]
        return {"data": {"resultType": "vector",
                         "result": [] if v is None else [{"value": [0, str(v)]}]}}
    return run_query


def _states(values) -> dict[str, str]:
    return {labels["variant"]: labels["state"] for m, v, labels in values
            if m is metrics.AB_GUARD_STATE and v == 1}


def test_failed_runs_in_a_row_stop_a_variant_and_inconclusive_ones_never_do():
    state = guard_runtime.read_state("")
    state, values, up = guard_runtime.run(CONFIG, state, run_query=_answers(
        {"treatment": 0.5, "other": None}), log=lambda _: None)
    assert up and _states(values) == {"treatment": "failing", "other": "inconclusive"}
    assert state == {"stopped": {}, "failedRuns": {"treatment": 1}}
    state, values, _ = guard_runtime.run(CONFIG, state, run_query=_answers(
        {"treatment": 0.5, "other": None}), log=lambda _: None)
    assert _states(values) == {"treatment": "stopped", "other": "inconclusive"}
    assert state["stopped"] == {"treatment": {"model": "m/2", "gate": "error-rate",
                                              "value": 0.5}}
    # stays stopped while the model is the same; a new model in ml.yaml ends the stop
    state, values, _ = guard_runtime.run(CONFIG, state, run_query=_answers(
        {"treatment": 0.0, "other": 0.0}), log=lambda _: None)
    assert _states(values) == {"treatment": "stopped", "other": "ok"}
    renewed = {**CONFIG, "variants": {"treatment": "m/4", "other": "m/3"}}
    state, values, _ = guard_runtime.run(renewed, state, run_query=_answers(
        {"treatment": 0.0, "other": 0.0}), log=lambda _: None)
    assert state == {"stopped": {}, "failedRuns": {}} and set(_states(values).values()) == {"ok"}


def test_a_passing_run_resets_the_count_and_an_unreachable_prometheus_changes_nothing():
    state = {"stopped": {}, "failedRuns": {"treatment": 1}}
    new, _, _ = guard_runtime.run(CONFIG, state, run_query=_answers(
        {"treatment": 0.01, "other": 0.0}), log=lambda _: None)
    assert new == {"stopped": {}, "failedRuns": {}}

    def down(url, promql):
        raise OSError("connection refused")
    new, _, up = guard_runtime.run(CONFIG, state, run_query=down, log=lambda _: None)
    assert not up and new == state
    # the override is one line that a single-quoted YAML scalar holds as it is
    text = guard_runtime.override_text({"stopped": {"it's": {"model": "m/2"}}, "failedRuns": {}})
    assert "'" not in text and "\n" not in text
    assert json.loads(yaml.safe_load(f"v: '{text}'")["v"])["stopped"] == {"it's": {"model": "m/2"}}


def test_the_guard_alerts_pass_their_promtool_tests(built, tmp_path):
    """ABVariantStopped fires on a stopped variant and not on a failing or healthy one;
    ABGuardFailing on a run that could not read Prometheus; ABGuardNotRunning without runs."""
    import shutil

    from mlc.compiler.backends import monitoring
    from mlc.compiler.render import render

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-system-deps.sh installs it)")
    files = [f for f in monitoring.emit(built.project) if "ab-guard-shop" in f.path]
    assert {Path(f.path).parent.name for f in files} >= {"rules", "tests"}
    for path, content in render(files).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(content)
    (test,) = (tmp_path / "monitoring" / "tests").glob("ab-guard-shop.test.yaml")
    text = test.read_text()
    assert all(f"alertname: {a}" in text for a in ("ABVariantStopped", "ABGuardFailing",
                                                   "ABGuardNotRunning"))
    done = subprocess.run([promtool, "test", "rules", test.name], cwd=test.parent,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_explain_shows_an_ab_rollouts_guardrails_only_where_set(tmp_path):
    from mlc.compiler.explain import explain

    unguarded = shop()
    del unguarded["rollout"]["gates"]
    write_project(tmp_path, {"ml.yaml": project_text({"shop": shop(), "plain": unguarded})})
    diags = Diagnostics()
    guarded = explain(tmp_path, "default", "serving.shop.rollout", diags)
    plain = explain(tmp_path, "default", "serving.plain.rollout", diags)
    assert guarded is not None and plain is not None, [d.message for d in diags.items]
    rows = {line.split()[0]: line.split()[1] for line in guarded.splitlines()}
    assert rows["serving.shop.rollout.gates.maxErrorRate"] == "0.05"
    assert "rollout.gates" not in plain


def test_plan_says_the_guardrails_exist_and_flags_their_removal(built, tmp_path):
    from mlc.compiler.plan.weakening import AB_GUARD_REMOVED, guard_notes, weakening_risks

    guarded = built.project.model_dump(mode="json")
    unguarded_endpoint = shop()
    del unguarded_endpoint["rollout"]["gates"]
    plain = build(tmp_path, {"shop": unguarded_endpoint}).project.model_dump(mode="json")
    (note,) = guard_notes(guarded)
    assert note.startswith("endpoint `shop`: A/B guardrails: CronWorkflow ab-guard-shop may "
                           "stop other, treatment (never the baseline control)")
    assert guard_notes(plain) == []
    assert [r.code for r in weakening_risks(guarded, plain)] == [AB_GUARD_REMOVED]
    assert weakening_risks(plain, guarded) == []


def test_the_guard_pods_reach_prometheus_the_pushgateway_and_the_api_only(built):
    """Its pods are Argo step pods: the namespace's policies for those must carry its
    queries, its push and its patch; the router needs none of it."""
    import ipaddress

    from mlc.compiler.backends import network

    from .netpol import Address, Pod, allowed

    project = built.project
    assert project.platform.network is not None
    policies = network.policies(project)
    names = {p["metadata"]["name"] for p in policies}
    assert {"workflow-steps", "pushgateway"} <= names
    guard = Pod("ab-guard-shop-1234", NAMESPACE,
                {"workflows.argoproj.io/workflow": "ab-guard-shop-1234"})
    p = project.platform
    prometheus = Pod("prometheus", p.prometheus_namespace, p.prometheus_pod_labels)
    gateway = Pod("pushgateway", NAMESPACE, {"app.kubernetes.io/name": "prometheus-pushgateway"})
    assert p.pushgateway_url.endswith(":9091") and f".{NAMESPACE}." in p.pushgateway_url
    api_range = p.network.kubernetes_api[0]
    api = Address(str(next(ipaddress.ip_network(api_range).hosts()))
                  if api_range != "0.0.0.0/0" else "10.96.0.1")
    assert allowed(policies, guard, prometheus, 9090)
    assert allowed(policies, guard, gateway, 9091)
    assert allowed(policies, guard, api, 443)  # the write step's patch
    # the router reads the override from its volume: it gets no API token
    router = built.named("Deployment", "shop-router")["spec"]["template"]["spec"]
    assert router["automountServiceAccountToken"] is False


def test_a_long_endpoint_name_leaves_argo_room_for_the_run_suffix(tmp_path):
    name = "a-rather-long-endpoint-name-for-a-recommendation-service-x"
    guard = build(tmp_path, {name: shop()}).project.endpoints[name].rollout.ab_guard
    assert guard is not None
    assert len(guard.workflow) <= 52 and guard.workflow.startswith("ab-guard-")
    assert len(guard.config_map) <= 63
