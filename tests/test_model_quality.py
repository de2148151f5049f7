"""The model-quality monitor, run as its generated CronWorkflow's container declares it.

A copy of the example project gets `monitoring.quality` on its online endpoint `fraud-api`,
with labels keyed by the customer and a time (the verdict's as-of join); it is compiled by
`mlc compile`, and the WorkflowTemplate's `quality` task runs as a local process
(tests/cluster_pods.py) against a real `prometheus-pushgateway`, a real MLflow store holding
the served version's training evaluation (`test_accuracy`), and a prediction log written by
the serving runtime's own writer. The generated alert rules are then evaluated by promtool
on the very values the run pushed.

Cases: a model as good as in training (no drop), one much worse (the drop alert fires on the
pushed values), labels still missing (waiting: exit 0, nothing scored), an unreadable labels
source (exit 1, `up` 0).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment

from . import servers
from .cluster_pods import Cluster, Failed, Image, mlc_compile, read_tree
from .conftest import copy_example
from .schema_check import check_crd, check_definition
from .test_drift_webhook import _run_cooldown, _substitute, _template, _when

pd = pytest.importorskip("pandas", reason="the quality runtime needs pandas (mlc[drift])")
mlflow = pytest.importorskip("mlflow", reason="the quality runtime reads MLflow (mlc[drift])")

# `mlc compile`, a Pushgateway, an MLflow store and the step as a process per case
pytestmark = pytest.mark.slow

MONITOR = "fraud-quality"
PIPELINE = "quality-fraud-quality"
PUSHGATEWAY_HOST = "prometheus-pushgateway.fraud-dev.svc:9091"
TRAINING_ACCURACY = 0.9
MAX_DROP = 0.05
HOUR = 3600.0


def make_project(tmp: Path, labels: Path, tracking: str) -> Path:
    root = copy_example(tmp)
    text = (root / "ml.yaml").read_text()
    text = text.replace("sources:\n", f"""sources:
  customer_outcomes:
    type: file
    path: "file://{labels}"
    timestampField: labelled_at
    columns:
      - {{name: customer_id, type: int64}}
      - {{name: is_fraud, type: int64}}
      - {{name: labelled_at, type: unix_timestamp}}
""", 1)
    text = text.replace("monitoring:\n", f"""monitoring:
  quality:
    {MONITOR}:
      endpoint: fraud-api
      labels: customer_outcomes
      entity: customer
      within: 1d
      metrics: [accuracy]
      minSamples: 300
      maxDrop: {MAX_DROP}
      schedule: "20 * * * *"
      routes: [risk-pager]
      onDrop: {{action: retrain, cooldown: 12h, maxRuns: 2, per: 7d}}
""", 1)
    (root / "ml.yaml").write_text(text)
    overlay = root / "environments" / "dev.yaml"
    overlay.write_text(overlay.read_text().replace(
        "http://mlflow.mlflow-dev.svc.cluster.local:5000", tracking))
    return root


def register(tracking: str, name: str) -> str:
    """A registered version whose training run logged the evaluation the trainer logs."""
    client = mlflow.MlflowClient(tracking, registry_uri=tracking)
    experiment = client.create_experiment("fraud")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "test_accuracy", TRAINING_ACCURACY)
    client.set_terminated(run.info.run_id)
    client.create_registered_model(name)
    return client.create_model_version(name, f"runs:/{run.info.run_id}/model",
                                       run.info.run_id).version


def write_case(log: Path, labels: Path, features: list[str], version: str, accuracy: float,
               customers: int, labelled: float, seed: int) -> tuple[int, int]:
    """Each customer scored once by the serving runtime's writer; a `labelled` share of them
    get a label some hours later, written in shuffled order. (correct, joined)."""
    from mlc.runtime.prediction_log import PredictionLogWriter

    rng = np.random.default_rng(seed)
    writer = PredictionLogWriter(str(log), features, 1.0,
                                 entity_keys={"customer_id": "int64", "merchant_id": "int64"})
    base = time.time() - 30 * HOUR
    rows, correct = [], 0
    for c in range(customers):
        y = int(rng.random() < 0.3)
        right = bool(rng.random() < accuracy)
        p = 0.8 if (y == 1) == right else 0.2
        at = base + c * 60.0
        writer.log(rng.normal(size=(1, len(features))), np.array([p]), version, now=at,
                   request_id=f"r{c}", request={"customer_id": c, "merchant_id": 3})
        if c < labelled * customers:
            rows.append((c, y, at + rng.uniform(1, 20) * HOUR))
            correct += int(right)
    writer.close()
    frame = pd.DataFrame(rows, columns=["customer_id", "is_fraud", "labelled_at"])
    frame.sample(frac=1, random_state=seed).to_parquet(labels)
    return correct, len(rows)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quality")
    labels = tmp / "customer-outcomes.parquet"
    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    root = make_project(tmp, labels, tracking)
    project = check_environment(root, "dev", Diagnostics())
    model = project.models["fraud-classifier"]
    version = register(tracking, model.registered_name)
    tree = mlc_compile(root, "dev", tmp / "deploy")
    with servers.pushgateway(tmp / "pushgateway") as url:
        objects = tmp / "objects"
        image = Image(tmp / "workdir", env={
            "MLC_PREDICTION_LOG_URI": (objects / "predictions").as_uri()})
        image.workdir.mkdir()
        docs = read_tree(tree)
        ref = next(t for d in docs if d.get("kind") == "WorkflowTemplate"
                   and d["metadata"]["name"] == PIPELINE for t in d["spec"]["templates"]
                   if t["name"] == "quality")["container"]["image"]
        c = Cluster(docs, tmp / "work", {ref: image},
                    hosts={PUSHGATEWAY_HOST: url.removeprefix("http://")}, timeout=120)
        yield {"cluster": c, "tree": tree, "labels": labels, "objects": objects, "url": url,
               "version": version, "features": [f.field for f in model.features],
               "tmp": tmp, "root": root, "registered": model.registered_name}


def run_case(env: dict, name: str, **case) -> tuple[int, str, dict | None, tuple[int, int]]:
    shutil.rmtree(env["objects"], ignore_errors=True)
    counts = write_case(env["objects"] / "predictions", env["labels"], env["features"],
                        env["version"], **case)
    try:
        [task] = env["cluster"].submit(PIPELINE, f"{PIPELINE}-{name}", {})
        code, log, pod = task.returncode, task.log, task.pod
    except Failed as exc:
        return int(str(exc).split("exited with ")[1].split(":")[0]), str(exc), None, counts
    report = env["cluster"].work / "pods" / pod / "fs" / "var/lib/mlc/run/quality" / \
        MONITOR / "quality.json"
    return code, log, json.loads(report.read_text()), counts


def pushed(url: str) -> dict[tuple, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    return {(s.name, s.labels.get("metric")): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith("mlc_model_quality") and s.labels.get("monitor") == MONITOR}


def alerts_on(env: dict, values: dict[tuple, float], tmp: Path) -> list[str]:
    """The generated rules evaluated by promtool on the pushed values: the alerts firing."""
    rules = env["tree"] / "monitoring" / "rules" / f"quality-{MONITOR}.rules.yaml"
    labels = {"namespace": "fraud-dev", "monitor": MONITOR, "endpoint": "fraud-api"}
    series = []
    for (name, metric), value in sorted(values.items(), key=str):
        selector = {**labels, **({"metric": metric} if metric else {})}
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(selector.items()))
        if name.endswith("_timestamp_seconds"):
            value = 0  # promtool's clock starts at 0: the run was just now
        series.append({"series": f"{name}{{{inner}}}", "values": f"{value}+0x10"})
    firing = []
    for alert in ("ModelQualityDropped", "ModelQualityFailing"):
        test = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
            "interval": "1m", "input_series": series,
            "alert_rule_test": [{"alertname": alert, "eval_time": "5m", "exp_alerts": []}]}]}
        path = tmp / f"{alert}.test.yaml"
        path.write_text(yaml.safe_dump(test))
        done = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:  # it expected silence: the alert fired
            assert alert in done.stdout + done.stderr, done.stdout + done.stderr
            firing.append(alert)
    return firing


def test_the_cronworkflow_runs_the_quality_step(cluster):
    docs = read_tree(cluster["tree"])
    [cron] = [d for d in docs if d.get("kind") == "CronWorkflow"
              and d["metadata"]["name"] == PIPELINE]
    assert cron["spec"]["schedules"] == ["20 * * * *"]
    [template] = [d for d in docs if d.get("kind") == "WorkflowTemplate"
                  and d["metadata"]["name"] == PIPELINE]
    [step] = [t for t in template["spec"]["templates"] if t["name"] == "quality"]
    assert step["container"]["args"][-2:] == ["--step", "quality"]
    assert step["container"]["securityContext"]["readOnlyRootFilesystem"] is True
    [rule] = [d for d in docs if d.get("kind") == "PrometheusRule"
              and d["metadata"]["name"].endswith(f"quality-{MONITOR}")]
    [config] = [d for d in docs if d.get("kind") == "AlertmanagerConfig"]
    # the monitor's alerts go to its routes, and nowhere else
    [route] = [r for r in config["spec"]["route"]["routes"] if "routes" in r
               and {"name": "monitor", "value": MONITOR, "matchType": "="} in r["matchers"]]
    assert [r["receiver"] for r in route["routes"]] == ["risk-pager"]
    for obj, crd in ((cron, "argo-workflows/argoproj.io_cronworkflows.yaml"),
                     (template, "argo-workflows/argoproj.io_workflowtemplates.yaml"),
                     (rule, "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml")):
        assert check_crd(obj, crd) == [], obj["kind"]
    # the generated promtool tests of the alerts pass
    tests = cluster["tree"] / "monitoring" / "tests" / f"quality-{MONITOR}.test.yaml"
    done = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_as_good_as_training_is_no_drop(cluster, tmp_path):
    code, log, report, (correct, joined) = run_case(
        cluster, "good", accuracy=TRAINING_ACCURACY, customers=900, labelled=0.8, seed=1)
    assert code == 0, log
    assert (report["state"], report["samples"]) == ("ok", joined)
    accuracy = report["metrics"]["accuracy"]
    assert accuracy["value"] == pytest.approx(correct / joined)
    assert accuracy["baseline"] == TRAINING_ACCURACY
    assert accuracy["drop"] == pytest.approx(TRAINING_ACCURACY - correct / joined)
    assert report["served_version"] == str(cluster["version"])
    values = pushed(cluster["url"])
    assert values[("mlc_model_quality_metric", "accuracy")] == pytest.approx(correct / joined)
    assert values[("mlc_model_quality_up", None)] == 1
    assert alerts_on(cluster, values, tmp_path) == []


def test_a_drop_fires_the_alert(cluster, tmp_path):
    code, log, report, (correct, joined) = run_case(
        cluster, "worse", accuracy=0.7, customers=900, labelled=0.8, seed=2)
    assert code == 0, log
    assert report["state"] == "dropped" and "DROPPED" in log
    drop = TRAINING_ACCURACY - correct / joined
    assert report["metrics"]["accuracy"]["drop"] == pytest.approx(drop) and drop > MAX_DROP
    values = pushed(cluster["url"])
    assert values[("mlc_model_quality_drop", "accuracy")] == pytest.approx(drop)
    assert alerts_on(cluster, values, tmp_path) == ["ModelQualityDropped"]


def test_labels_not_there_yet_wait_and_do_not_alert(cluster, tmp_path):
    code, log, report, (_, joined) = run_case(
        cluster, "waiting", accuracy=0.5, customers=900, labelled=0.1, seed=3)
    assert code == 0, log
    assert (report["state"], report["samples"], report["metrics"]) == ("waiting", joined, {})
    values = pushed(cluster["url"])
    assert values[("mlc_model_quality_waiting", None)] == 1
    # the last run's drop is replaced, not left behind: nothing can fire on it
    assert ("mlc_model_quality_drop", "accuracy") not in values
    assert alerts_on(cluster, values, tmp_path) == []


def test_an_unreadable_labels_source_fails_the_run(cluster, tmp_path):
    shutil.rmtree(cluster["objects"], ignore_errors=True)
    cluster["labels"].unlink(missing_ok=True)
    with pytest.raises(Failed, match="exited with 1") as err:
        cluster["cluster"].submit(PIPELINE, f"{PIPELINE}-broken", {})
    assert "quality monitor `fraud-quality` failed" in str(err.value)
    values = pushed(cluster["url"])
    assert values[("mlc_model_quality_up", None)] == 0
    assert alerts_on(cluster, values, tmp_path) == ["ModelQualityFailing"]


def test_a_drop_retrains_through_drift_s_guarded_path(cluster):
    """`onDrop: retrain`: the drop alert goes to the retraining webhook, whose Sensor creates
    the same gate Workflow as drift's: the cooldown step (run here as declared) lets one
    training run start per lease, `reason=quality`."""
    from mlc.compiler.backends.argo.cooldown import COOLDOWN, ENTRYPOINT, START

    docs = read_tree(cluster["tree"])
    [source] = [d for d in docs if d.get("kind") == "EventSource"]
    [sensor] = [d for d in docs if d.get("kind") == "Sensor"]
    for obj in (source, sensor):
        definition = f"io.argoproj.events.v1alpha1.{obj['kind']}"
        assert check_definition(obj, "argo-events/schema.json", definition) == []
    event = sensor["spec"]["dependencies"][0]["eventName"]
    assert event == f"quality-{MONITOR}" and event in source["spec"]["webhook"]
    hook = source["spec"]["webhook"][event]
    [config] = [d for d in docs if d.get("kind") == "AlertmanagerConfig"]
    [route] = [r for r in config["spec"]["route"]["routes"]
               if {"name": "alertname", "value": "ModelQualityDropped", "matchType": "="}
               in r.get("matchers", [])]
    assert {"name": "monitor", "value": MONITOR, "matchType": "="} in route["matchers"]
    assert route["repeatInterval"] == "12h"
    [receiver] = [r for r in config["spec"]["receivers"] if r["name"] == route["receiver"]]
    assert receiver["webhookConfigs"][0]["url"] == hook["url"] + hook["endpoint"]

    gate = sensor["spec"]["triggers"][0]["template"]["k8s"]["source"]["resource"]
    assert check_crd(gate, "argo-workflows/argoproj.io_workflows.yaml") == []
    training = yaml.safe_load(_template(gate, START)["resource"]["manifest"])
    assert training["spec"]["workflowTemplateRef"] == {"name": "train-fraud-classifier"}
    assert training["spec"]["arguments"]["parameters"] == [{"name": "reason",
                                                            "value": "quality"}]
    step = _template(gate, COOLDOWN)
    lease = int(step["container"]["command"][-1])
    assert lease == 7 * 86400 // 2  # 2 per 7d spaces starts wider than the 12h cooldown
    steps = _template(gate, ENTRYPOINT)["steps"]
    last = "0"  # the ConfigMap has no start yet

    def alert(now: int) -> bool:
        nonlocal last
        result = _run_cooldown(step, last, now)
        values = {"steps.cooldown.outputs.result": result,
                  "workflow.creationTimestamp.s": str(now)}
        if _when(_substitute(steps[1][0]["when"], values)):
            last = str(now)  # the record step
            return True
        return False

    t0 = 1_800_000_000
    assert [alert(t) for t in (t0, t0 + 3600, t0 + lease - 1, t0 + lease)] == [
        True, False, False, True]


def test_mlc_run_quality_runs_the_monitor_on_this_machine(cluster):
    """`mlc run quality MONITOR`: the same pipeline on this machine's registry (.mlc/mlflow.db),
    over the prediction log `mlc run serve` writes (.mlc/predictions/<endpoint>)."""
    root = cluster["root"]
    state = root / ".mlc"
    state.mkdir(exist_ok=True)
    version = register(f"sqlite:///{state / 'mlflow.db'}", cluster["registered"])
    correct, joined = write_case(state / "predictions" / "fraud-api", cluster["labels"],
                                 cluster["features"], version, accuracy=0.7, customers=900,
                                 labelled=0.8, seed=4)
    done = subprocess.run([sys.executable, "-m", "mlc", "run", "quality", MONITOR, "-C",
                           str(root), "--env", "dev"], capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ})
    assert done.returncode == 0, done.stdout + done.stderr
    [report] = (state / "runs" / PIPELINE).glob(f"*/quality/{MONITOR}/quality.json")
    report = json.loads(report.read_text())
    assert (report["state"], report["samples"]) == ("dropped", joined)
    assert report["metrics"]["accuracy"]["value"] == pytest.approx(correct / joined)
    assert report["served_version"] == str(version)
    unknown = subprocess.run([sys.executable, "-m", "mlc", "run", "quality", "nope", "-C",
                              str(root), "--env", "dev"], capture_output=True, text=True,
                             timeout=300, check=False)
    assert unknown.returncode == 2 and f"known: {MONITOR}" in unknown.stdout + unknown.stderr
