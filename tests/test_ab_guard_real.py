"""A/B guardrails for real: the guard stops a failing variant, the router sends it nothing.

Three variants behind the real router process, served by real serving runtimes on a real
MLflow registry (tests/faulty_model.py; `other` shares control's process); a real Prometheus
scraping the router and a real Pushgateway; the guard's `measure` container run as its
template declares it, its `write` step's manifest parsed after Argo's substitution, the
result put where the router's mounted ConfigMap puts it (the kubelet's `..data` link swap).
The variant whose traffic carries the model's failure marker (5xx) is stopped, the healthy
one stays; the router then sends the stopped arm 0 of N requests and keeps every other key
where it was. The objects and the mechanisms on their own: tests/test_ab_guard.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from mlc.compiler.backends.serving import ab_guard
from mlc.runtime.serve.router import Assigner, RouterVariant

from .conftest import ROOT
from .stopping import stop_all
from .test_ab_guard import NAMESPACE, _router_config, shop
from .test_serving import Built, build


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("guarded"), {"shop": shop()})


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
        # two serving processes: `other`'s Service is control's process here (the guard and
        # the router tell variants apart by the router's assignment, not by the server), which
        # spares the run a third model server starting on a loaded machine
        for name in ("control", "treatment"):
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
        servers = list(urls.values())
        urls["other"] = urls["control"]
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
        for p, url in zip(procs, [*servers, router_url], strict=True):
            _wait_ready(url, p)

        # which arm each user is on, as the router assigns them (the same hash)
        assigner = Assigner(tuple(RouterVariant(v["name"], v["weight"], v["url"])
                                  for v in router_cfg["variants"]))
        users = [f"user-{i}" for i in range(150)]
        arm = {u: assigner.assign(u).name for u in users}
        types = {f.field: f.type for f in project.endpoints["shop"].input_features}
        row = {f: 1 if types[f].startswith("int") else 0.5 for f in features}
        bad = {**row, features[0]: faulty_model.FAIL}  # the model raises: a 500
        http = httpx.Client(base_url=router_url, timeout=30)

        def send(rows_for, who: list[str] = users) -> dict[str, tuple[str, int]]:
            """user -> (the variant that answered, the status code)"""
            out = {}
            for u in who:
                r = http.post("/predict", json={"instances": [rows_for(u)]},
                              headers={"X-User-Id": u})
                out[u] = (r.headers["x-mlc-variant"], r.status_code)
            return out

        def codes(answers: dict[str, tuple[str, int]]) -> dict[str, set[int]]:
            out: dict[str, set[int]] = {}
            for variant, code in answers.values():
                out.setdefault(variant, set()).add(code)
            return out

        # the router's series exist at 0 from its start: a scrape before the traffic, so
        # that rate() sees the very first requests
        assert prometheus.wait_for('count(mlc_router_requests_total{endpoint="shop"})',
                                   lambda r: bool(r) and r[0][1] > 0, timeout=60)
        # treatment's users send the failure marker: its arm answers 5xx
        first = codes(send(lambda u: bad if arm[u] == "treatment" else row))
        assert first == {"control": {200}, "treatment": {500}, "other": {200}}
        rates = prometheus.wait_for(
            'sum by (variant) (rate(mlc_router_requests_total{endpoint="shop"}[1m]))',
            lambda r: len([v for _, v in r if v > 0]) == 3, timeout=60)
        assert len([v for _, v in rates if v > 0]) == 3, rates

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
        assert codes(after) == {"control": {200}, "other": {200}}  # treatment: 0 of 150
        # every key on a live arm stays there; treatment's keys went to both others
        assert all(after[u][0] == arm[u] for u in users if arm[u] != "treatment")
        assert {after[u][0] for u in users if arm[u] == "treatment"} == {"control", "other"}
        router_metrics = http.get("/metrics").text
        assert 'mlc_router_variant_stopped{endpoint="shop",variant="treatment"} 1.0' in \
            router_metrics
        assert 'mlc_router_override_problems_total{endpoint="shop",reason="missing"} 1.0' in \
            router_metrics  # before the first run wrote the ConfigMap's key

        # what the router cannot read: ml.yaml's weights again, counted; an unknown variant
        # beside a stop: the stop holds, the unknown name is counted
        for generation, text, reason, live in (
                (3, "{not json", "malformed", {"control", "treatment", "other"}),
                (4, json.dumps({**json.loads(state), "stopped": {
                    **json.loads(state)["stopped"], "ghost": {"model": "m"}}}),
                 "unknown-variant", {"control", "other"})):
            kubelet_write(mounted, {ab_guard.OVERRIDE_KEY: text}, generation)
            time.sleep(0.5)
            assert set(codes(send(lambda u: row, users[:60]))) == live, reason
            assert (f'mlc_router_override_problems_total{{endpoint="shop",reason="{reason}"}} '
                    "1.0") in http.get("/metrics").text
        assert router.proc.poll() is None  # it kept serving throughout
        http.close()
    finally:
        if prometheus is not None:
            prometheus.stop()
        stop_all(procs)
