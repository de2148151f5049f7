"""A/B guardrails (`rollout.gates` on an `ab` rollout): the guard CronWorkflow, the override
the routers read, and the forms that cannot have them.

The objects: the CronWorkflow, its Role (one ConfigMap, by name), the override ConfigMap,
the router's mount and the Argo CD Application, each against its upstream schema.

The mechanisms on their own: what the router does with every kind of override file, and how
the guard counts failed and inconclusive runs.

For real (slow): three variants behind the real router process, the variants real serving
runtimes on a real MLflow registry; a real Prometheus scraping the router and a real
Pushgateway; the guard's `measure` container run as its template declares it, its `write`
step's manifest parsed after Argo's substitution, the result put where the router's mounted
ConfigMap puts it (the kubelet's `..data` link swap). The variant whose traffic carries the
model's failure marker (tests/faulty_model.py: 5xx) is stopped, the healthy one stays; the
router then sends the stopped arm 0 of N requests and keeps every other key where it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hera.workflows import models as hera_models

from mlc import metrics
from mlc.compiler.backends import argocd
from mlc.compiler.backends.serving import ab_guard
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime import ab_guard as guard_runtime
from mlc.runtime.serve import weights_override as wo
from mlc.runtime.serve.router import Assigner, RouterVariant

from . import schema_check
from .conftest import ROOT, write_project
from .test_serving import Built, build, project_text

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
    write_project(tmp_path, {"ml.yaml": project_text({"e": endpoint}, platform)})
    diags = Diagnostics()
    check_environment(tmp_path, "default", diags)
    out: dict[str, list[str]] = {}
    for d in diags.items:
        if d.code != "MLC343":
            out.setdefault(d.code, []).append(d.dotted_path)
    return out


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


# ---------------------------------------------------------------------------------------
# For real: Prometheus, the router, the variants, the guard


def _register(tracking: str, name: str, features: list[str]) -> str:
    import mlflow
    import numpy as np
    import pandas as pd

    from . import faulty_model

    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    example = pd.DataFrame([[0.0] * len(features)], columns=features)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=faulty_model.__file__,
            signature=mlflow.models.infer_signature(example, np.array([0.1])),
            input_example=example, pip_requirements=["numpy"])
    return mlflow.register_model(info.model_uri, name).version


class Proc:
    def __init__(self, folder: Path, name: str, argv: list[str], env: dict[str, str]):
        self.log = open(folder / f"{name}.log", "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def _free_port() -> int:
    from .prometheus_server import free_port
    return free_port()


def _wait_ready(url: str, proc: Proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.proc.poll() is None, proc.output()
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(proc.output())


def kubelet_write(folder: Path, files: dict[str, str], generation: int) -> None:
    """A ConfigMap volume as the kubelet updates it: the data in a new timestamped folder,
    `..data` swapped to it in one rename, each key a link through `..data`."""
    target = folder / f"..{generation}"
    target.mkdir()
    for key, text in files.items():
        (target / key).write_text(text)
    link = folder / "..data_tmp"
    link.symlink_to(target.name)
    link.rename(folder / "..data")
    for key in files:
        if not (folder / key).is_symlink():
            (folder / key).symlink_to(f"..data/{key}")


def run_measure(built: Built, folder: Path, state: str, prometheus: str,
                pushgateway: str) -> subprocess.CompletedProcess:
    """The CronWorkflow's `measure` step as its template declares it: command, args (the
    state input as Argo fills it from the ConfigMap), env, the guard file where the template
    mounts it. Changed: the cluster's Prometheus and Pushgateway are the test's."""
    (cron,) = built.files["delivery/cronworkflow-shop.yaml"]
    t = {x["name"]: x for x in cron["spec"]["workflowSpec"]["templates"]}
    container = t["measure"]["container"]
    guard_file = folder / "ab-guard.json"
    settings = json.loads(built.named("ConfigMap", "shop-serve")["data"][ab_guard.GUARD_KEY])
    guard_file.write_text(json.dumps({**settings, "prometheus": prometheus}))
    argv = []
    for a in container["command"] + container["args"]:
        a = a.replace("{{inputs.parameters.state}}", state)
        argv.append(str(guard_file) if a == f"{ab_guard.GUARD_DIR}/{ab_guard.GUARD_KEY}" else a)
    assert argv[:3] == ["python", "-m", "mlc.runtime"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLC_PUSHGATEWAY_URL"] == built.project.platform.pushgateway_url
    env |= {"MLC_PUSHGATEWAY_URL": pushgateway, "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True,
                          text=True, timeout=60)


def write_step(built: Built, override: str) -> str:
    """The `write` step's manifest after Argo's substitution, parsed: the value it patches."""
    (cron,) = built.files["delivery/cronworkflow-shop.yaml"]
    t = {x["name"]: x for x in cron["spec"]["workflowSpec"]["templates"]}
    manifest = t["write"]["resource"]["manifest"].replace("{{inputs.parameters.override}}",
                                                          override)
    return yaml.safe_load(manifest)["data"][ab_guard.OVERRIDE_KEY]


@pytest.mark.slow
def test_the_guard_stops_a_failing_variant_and_the_router_sends_it_nothing(built, tmp_path,
                                                                          monkeypatch):
    from . import faulty_model
    from .prometheus_server import PrometheusServer, Target
    from .servers import pushgateway

    project = built.project
    features = [f.field for f in project.endpoints["shop"].input_features]
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    registered = project.endpoints["shop"].registered_name
    version = _register(tracking, registered, features)
    (tmp_path / "project.json").write_text(project.model_dump_json())
    data = built.named("ConfigMap", "shop-serve")["data"]
    base_env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": tracking,
                "MLC_ALLOW_PICKLE": "1"}
    procs: list[Proc] = []
    prometheus = None
    try:
        urls = {}
        for name in WEIGHTS:
            config = json.loads(data[f"variant-{name}.json"])
            config["model_uri"] = f"models:/{registered}/{version}"  # one model for all arms
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(config))
            port = _free_port()
            procs.append(Proc(tmp_path, name, [
                sys.executable, "-m", "mlc.runtime", "serve", "--project",
                str(tmp_path / "project.json"), "--endpoint", "shop", "--host", "127.0.0.1",
                "--port", str(port)], {**base_env, "MLC_ENDPOINT_CONFIG": str(path),
                                       "MLC_MODEL_URI": config["model_uri"],
                                       "MLC_PREDICTION_LOG_URI": str(tmp_path / "log")}))
            urls[name] = f"http://127.0.0.1:{port}"
        # the router's settings as compiled; the variants' Services and the mounted override
        # are local here, and it polls the file every 0.2 s instead of 5 s
        mounted = tmp_path / "ab-guard-volume"
        mounted.mkdir()
        router_cfg = _router_config(built)
        for v in router_cfg["variants"]:
            v["url"] = urls[v["name"]]
        router_cfg["guard"] |= {"override": str(mounted / "override.json"), "poll_seconds": 0.2}
        (tmp_path / "router.json").write_text(json.dumps(router_cfg))
        router_port = _free_port()
        router = Proc(tmp_path, "router", [
            sys.executable, "-m", "mlc.runtime", "route", "--endpoint", "shop", "--host",
            "127.0.0.1", "--port", str(router_port)],
            {**base_env, "MLC_ENDPOINT_CONFIG": str(tmp_path / "router.json")})
        procs.append(router)
        router_url = f"http://127.0.0.1:{router_port}"
        prometheus = PrometheusServer(tmp_path / "prometheus", [
            Target(f"127.0.0.1:{router_port}", {"namespace": NAMESPACE})], [])
        for p, url in zip(procs, [*urls.values(), router_url], strict=True):
            _wait_ready(url, p)

        # which arm each user is on, as the router assigns them (the same hash)
        assigner = Assigner(tuple(RouterVariant(v["name"], v["weight"], v["url"])
                                  for v in router_cfg["variants"]))
        users = [f"user-{i}" for i in range(300)]
        arm = {u: assigner.assign(u).name for u in users}
        types = {f.field: f.type for f in project.endpoints["shop"].input_features}
        row = {f: 1 if types[f].startswith("int") else 0.5 for f in features}
        bad = {**row, features[0]: faulty_model.FAIL}  # the model raises: a 500
        http = httpx.Client(base_url=router_url, timeout=30)

        def send(rows_for) -> dict[str, list[int]]:
            out: dict[str, list[int]] = {}
            for u in users:
                r = http.post("/predict", json={"instances": [rows_for(u)]},
                              headers={"X-User-Id": u})
                out.setdefault(r.headers["x-mlc-variant"], []).append(r.status_code)
            return out

        # treatment's users send the failure marker: its arm answers 5xx
        first = send(lambda u: bad if arm[u] == "treatment" else row)
        assert set(first) == set(WEIGHTS)
        assert set(first["treatment"]) == {500} and set(first["other"]) == {200}
        prometheus.wait_for(
            'sum by (variant) (rate(mlc_router_requests_total{endpoint="shop"}[1m]))',
            lambda r: len([v for _, v in r if v > 0]) == 3)

        with pushgateway(tmp_path / "pushgateway") as gateway:
            state = ""  # the ConfigMap's key before the first run: the input's default
            outcomes = []
            for generation in (1, 2):
                done = run_measure(built, tmp_path, state, prometheus.url, gateway)
                assert done.returncode == 0, done.stderr
                outcomes.append(done.stderr)
                state = write_step(built, done.stdout.strip())
                kubelet_write(mounted, {ab_guard.OVERRIDE_KEY: state}, generation)
            pushed = httpx.get(gateway + "/metrics").text
        # failureLimit 1: the first failed run is tolerated, the second stops it
        assert "treatment: failing" in outcomes[0] and "treatment: STOPPED" in outcomes[1]
        assert "other: ok" in outcomes[0] and "other: ok" in outcomes[1]
        assert "control" not in "".join(outcomes)  # the baseline is never measured
        assert json.loads(state)["stopped"]["treatment"]["gate"] == "error-rate"
        assert ('mlc_ab_guard_variant_state{endpoint="shop",instance="",job="mlc-ab-guard",'
                'state="stopped",variant="treatment"} 1') in pushed
        assert ('mlc_ab_guard_variant_state{endpoint="shop",instance="",job="mlc-ab-guard",'
                'state="ok",variant="other"} 1') in pushed

        time.sleep(0.5)  # the router's poll
        after = send(lambda u: row)
        assert "treatment" not in after  # 0 of 300
        assert sum(len(c) for c in after.values()) == len(users)
        assert all(set(c) == {200} for c in after.values())
        answers = {u: http.post("/predict", json={"instances": [row]},
                                headers={"X-User-Id": u}).headers["x-mlc-variant"]
                   for u in users}
        assert all(answers[u] == arm[u] for u in users if arm[u] != "treatment")
        router_metrics = http.get("/metrics").text
        assert 'mlc_router_variant_stopped{endpoint="shop",variant="treatment"} 1.0' in \
            router_metrics
        assert 'mlc_router_override_problems_total{endpoint="shop",reason="missing"} 1.0' in \
            router_metrics  # before the first run wrote the ConfigMap's key
        http.close()
    finally:
        if prometheus is not None:
            prometheus.stop()
        for p in procs:
            p.stop()


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
