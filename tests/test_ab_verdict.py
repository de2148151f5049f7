"""The A/B verdict, run as its generated CronWorkflow's container declares it.

A copy of the example project gets an A/B endpoint with a verdict and a labels file; it is
compiled by `mlc compile`, and the WorkflowTemplate's `verdict` task runs as a local process
(tests/cluster_pods.py: command, args, env and mounts as written), with the Pushgateway's
host mapped to a real `prometheus-pushgateway` and the object store replaced by folders.
The prediction log is written by the serving runtime's own writer, as an A/B variant's
server writes it: one row per request, its request id, the variant and the version.

Cases: variant B clearly better on thousands of rows (winner B, p < alpha, the p-value
checked against scipy's chi-square test of the same table), no difference, and too few
labels (the run succeeds and records `waiting`: in verdict.json, in the step's output
parameter, in the pushed gauges). Then `mlc promote dev --from-verdict` on the project, compiled.
A second endpoint joins labels keyed by the customer and a time (`entity: customer`): labels
arrive late and out of order, some past `within`, and the figures are the ones worked out
from the generated outcomes.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats as sps

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment

from . import servers
from .cluster_pods import Cluster, Failed, Image, mlc_compile, read_tree
from .conftest import copy_example

pd = pytest.importorskip("pandas", reason="the verdict runtime needs pandas (mlc[drift])")

# a real Pushgateway, `mlc compile` and the step as a process per case: about 35 s in all
pytestmark = pytest.mark.slow

ENDPOINT = "fraud-ab"
PIPELINE = "verdict-fraud-ab"
BY_CUSTOMER = "fraud-ab-customer"  # its verdict joins on the customer, as of the label's time
PUSHGATEWAY_HOST = "prometheus-pushgateway.fraud-dev.svc:9091"
VERSIONS = {"control": "3", "treatment": "4"}


def make_project(tmp: Path, labels: Path) -> Path:
    root = copy_example(tmp)
    text = (root / "ml.yaml").read_text()
    text = text.replace("sources:\n", f"""sources:
  outcomes:
    type: file
    path: "file://{labels}"
    timestampField: labelled_at
    columns:
      - {{name: request_id, type: string}}
      - {{name: is_fraud, type: int64}}
      - {{name: labelled_at, type: unix_timestamp}}
  customer_outcomes:
    type: file
    path: "file://{labels.with_name('customer-outcomes.parquet')}"
    timestampField: labelled_at
    columns:
      - {{name: customer_id, type: int64}}
      - {{name: is_fraud, type: int64}}
      - {{name: labelled_at, type: unix_timestamp}}
""", 1)
    text = text.replace("serving:\n", f"""serving:
  {ENDPOINT}:
    model: fraud-classifier
    hardware: small
    rollout:
      strategy: ab
      assignment: {{header: x-user-id}}
      variants:
        - {{name: control, version: {VERSIONS['control']}, weight: 50}}
        - {{name: treatment, version: {VERSIONS['treatment']}, weight: 50}}
      verdict:
        labels: outcomes
        metric: accuracy
        minSamples: 500
        alpha: 0.05
        schedule: "30 * * * *"
  {BY_CUSTOMER}:
    model: fraud-classifier
    hardware: small
    rollout:
      strategy: ab
      assignment: {{field: customer_id}}
      variants:
        - {{name: control, version: {VERSIONS['control']}, weight: 50}}
        - {{name: treatment, version: {VERSIONS['treatment']}, weight: 50}}
      verdict:
        labels: customer_outcomes
        entity: customer
        within: 1d
        minSamples: 200
        schedule: "45 * * * *"
""", 1)
    (root / "ml.yaml").write_text(text)
    return root


def write_case(log: Path, labels: Path, features: list[str], accuracy: dict[str, float],
               rows: dict[str, int], labelled: dict[str, int], seed: int) -> dict:
    """Predictions logged by the runtime's writer, one request each; labels for the first
    `labelled[v]` of each variant. Returns the counts of correct answers per variant."""
    from mlc.runtime.prediction_log import PredictionLogWriter

    rng = np.random.default_rng(seed)
    label_rows, correct = [], {}
    for variant, n in rows.items():
        writer = PredictionLogWriter(str(log), features, 1.0, variant=variant)
        y = (rng.random(n) < 0.3).astype(int)
        right = rng.random(n) < accuracy[variant]
        predicted = np.where(right, y, 1 - y)
        p = np.where(predicted == 1, 0.8, 0.2)
        x = rng.normal(size=(n, len(features)))
        now = time.time() - 3600
        for i in range(n):
            rid = f"{variant}-{seed}-{i}"
            writer.log(x[i:i + 1], p[i:i + 1], VERSIONS[variant], now=now, request_id=rid)
            if i < labelled[variant]:
                label_rows.append((rid, int(y[i]), now + 60))
        writer.close()
        k = labelled[variant]
        correct[variant] = (int(right[:k].sum()), k)
    frame = pd.DataFrame(label_rows, columns=["request_id", "is_fraud", "labelled_at"])
    frame.to_parquet(labels)
    return correct


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verdict")
    labels = tmp / "outcomes.parquet"
    root = make_project(tmp, labels)
    tree = mlc_compile(root, "dev", tmp / "deploy")
    with servers.pushgateway(tmp / "pushgateway") as url:
        objects = tmp / "objects"  # the object store of the prediction log and the verdicts
        # file:// URIs, as an object store's would be: no pod mount (/tmp) maps them
        image = Image(tmp / "workdir", env={
            "MLC_PREDICTION_LOG_URI": (objects / "predictions").as_uri(),
            "MLC_VERDICT_URI": (objects / "verdicts" / f"{ENDPOINT}.json").as_uri()})
        image.workdir.mkdir()
        docs = read_tree(tree)
        ref = next(t for d in docs if d.get("kind") == "WorkflowTemplate"
                   and d["metadata"]["name"] == PIPELINE for t in d["spec"]["templates"]
                   if t["name"] == "verdict")["container"]["image"]
        c = Cluster(docs, tmp / "work", {ref: image},
                    hosts={PUSHGATEWAY_HOST: url.removeprefix("http://")}, timeout=120)
        yield {"cluster": c, "root": root, "tree": tree, "labels": labels, "objects": objects,
               "url": url, "tmp": tmp}


def features(root: Path) -> list[str]:
    project = check_environment(root, "dev", Diagnostics())
    return [f.field for f in project.models["fraud-classifier"].features]


def pushed(url: str) -> dict[tuple, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                  if k in ("endpoint", "variant", "decision", "metric")))):
            s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith("mlc_ab_verdict")}


def run_case(env: dict, name: str, **case) -> tuple[dict, dict, str]:
    objects = env["objects"]
    shutil.rmtree(objects, ignore_errors=True)
    correct = write_case(objects / "predictions", env["labels"], features(env["root"]),
                         **case)
    output = None
    try:
        [task] = env["cluster"].submit(PIPELINE, f"{PIPELINE}-{name}", {})
        code, log = task.returncode, task.log
        output = decision_output(env["cluster"], task.pod)
    except Failed as exc:
        code, log = int(str(exc).split("exited with ")[1].split(":")[0]), str(exc)
    verdict = json.loads((objects / "verdicts" / f"{ENDPOINT}.json").read_text()) \
        if code == 0 else None
    return {"code": code, "verdict": verdict, "log": log, "output": output}, correct, log


def decision_output(cluster: Cluster, pod: str) -> str:
    """The step's output parameter `decision`, read where Argo reads it: the declared path,
    inside the pod's mounts."""
    template = next(t for t in cluster.templates[PIPELINE]["spec"]["templates"]
                    if t["name"] == "verdict")
    [parameter] = template["outputs"]["parameters"]
    assert parameter["name"] == "decision" and parameter["valueFrom"]["default"] == "failed"
    path = cluster.work / "pods" / pod / "fs" / parameter["valueFrom"]["path"].lstrip("/")
    return path.read_text().strip()


def keep_verdict(cluster: dict, name: str) -> None:
    """The published verdict, kept for the promote test under `name`."""
    cluster[name] = cluster["tmp"] / f"{name}.json"
    shutil.copy(cluster["objects"] / "verdicts" / f"{ENDPOINT}.json", cluster[name])


def test_the_cronworkflow_runs_the_verdict_step(cluster):
    docs = read_tree(cluster["tree"])
    [cron] = [d for d in docs if d.get("kind") == "CronWorkflow"
              and d["metadata"]["name"] == PIPELINE]
    assert cron["spec"]["schedules"] == ["30 * * * *"]
    assert cron["spec"]["workflowSpec"]["workflowTemplateRef"]["name"] == PIPELINE
    [template] = [d for d in docs if d.get("kind") == "WorkflowTemplate"
                  and d["metadata"]["name"] == PIPELINE]
    [step] = [t for t in template["spec"]["templates"] if t["name"] == "verdict"]
    container = step["container"]
    assert container["command"] == ["python", "-m", "mlc.runtime", "step"]
    assert container["args"][-2:] == ["--step", "verdict"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # too few labels is no failure: no exit code of its own for Argo to keep from retrying
    assert "'30'" not in step["retryStrategy"]["expression"]


def test_a_clear_difference_makes_b_the_winner(cluster):
    result, correct, log = run_case(
        cluster, "winner", accuracy={"control": 0.80, "treatment": 0.88},
        rows={"control": 3000, "treatment": 3000},
        labelled={"control": 2800, "treatment": 2900}, seed=1)
    assert result["code"] == 0, log
    v = result["verdict"]
    assert v["decision"] == "winner" and v["winner"] == "treatment"
    assert result["output"] == "winner"
    assert v["winner_model"]["version"] == 4
    assert (v["project"], v["environment"], v["endpoint"]) == ("fraud-detection", "dev",
                                                                ENDPOINT)
    assert v["join"]["joined"] == 5700 and v["join"]["unlabelled"] == 300
    (k1, n1), (k0, n0) = correct["treatment"], correct["control"]
    assert v["variants"]["treatment"]["value"] == pytest.approx(k1 / n1)
    assert v["variants"]["control"]["samples"] == n0
    # the two-sided z-test of two proportions is the uncorrected chi-square test of the table
    _, p_independent, _, _ = sps.chi2_contingency([[k1, n1 - k1], [k0, n0 - k0]],
                                                  correction=False)
    comparison = v["comparisons"]["treatment"]
    assert comparison["p_value"] == pytest.approx(p_independent, rel=1e-6)
    assert comparison["p_value"] < 0.05 and comparison["significant"]
    lo, hi = comparison["difference_ci"]
    assert 0 < lo < k1 / n1 - k0 / n0 < hi
    metrics = pushed(cluster["url"])
    key = (("endpoint", ENDPOINT), ("metric", "accuracy"), ("variant", "treatment"))
    assert metrics[("mlc_ab_verdict_metric", key)] == pytest.approx(k1 / n1)
    assert metrics[("mlc_ab_verdict_p_value", key)] == pytest.approx(p_independent, rel=1e-6)
    assert metrics[("mlc_ab_verdict_winner", (("endpoint", ENDPOINT),
                                              ("variant", "treatment")))] == 1
    assert metrics[("mlc_ab_verdict_decision", (("decision", "winner"),
                                                ("endpoint", ENDPOINT)))] == 1
    assert metrics[("mlc_ab_verdict_samples", (("endpoint", ENDPOINT),
                                               ("variant", "control")))] == n0
    assert metrics[("mlc_ab_verdict_up", (("endpoint", ENDPOINT),))] == 1
    keep_verdict(cluster, "winner")


def test_no_difference(cluster):
    result, correct, log = run_case(
        cluster, "same", accuracy={"control": 0.85, "treatment": 0.85},
        rows={"control": 2000, "treatment": 2000},
        labelled={"control": 2000, "treatment": 2000}, seed=7)
    assert result["code"] == 0, log
    v = result["verdict"]
    (k1, n1), (k0, n0) = correct["treatment"], correct["control"]
    _, p_independent, _, _ = sps.chi2_contingency([[k1, n1 - k1], [k0, n0 - k0]],
                                                  correction=False)
    assert p_independent >= 0.05  # the data the case stands on
    assert v["decision"] == "no-difference" and v["winner"] is None
    assert v["comparisons"]["treatment"]["p_value"] == pytest.approx(p_independent, rel=1e-6)
    metrics = pushed(cluster["url"])
    assert metrics[("mlc_ab_verdict_decision", (("decision", "no-difference"),
                                                ("endpoint", ENDPOINT)))] == 1
    assert metrics[("mlc_ab_verdict_winner", (("endpoint", ENDPOINT),
                                              ("variant", "treatment")))] == 0
    keep_verdict(cluster, "same")


def test_too_few_labels_succeed_as_waiting_and_say_so(cluster):
    result, _, log = run_case(
        cluster, "short", accuracy={"control": 0.8, "treatment": 0.95},
        rows={"control": 1000, "treatment": 1000},
        labelled={"control": 900, "treatment": 300}, seed=3)
    assert result["code"] == 0, log
    assert "waiting for labels: treatment short of minSamples 500" in log
    assert result["output"] == "waiting"
    v = result["verdict"]
    assert (v["decision"], v["winner"], v["short_of_samples"]) == ("waiting", None,
                                                                   ["treatment"])
    assert (v["join"]["joined"], v["join"]["unlabelled"]) == (1200, 800)
    metrics = pushed(cluster["url"])
    assert metrics[("mlc_ab_verdict_decision", (("decision", "waiting"),
                                                ("endpoint", ENDPOINT)))] == 1
    # a waiting run reports as a run that worked: neither ABVerdictFailing (up 0) nor
    # ABVerdictNotRunning (no recent run time) fires on it
    assert metrics[("mlc_ab_verdict_up", (("endpoint", ENDPOINT),))] == 1
    assert time.time() - metrics[("mlc_ab_verdict_last_run_timestamp_seconds",
                                  (("endpoint", ENDPOINT),))] < 600
    assert metrics[("mlc_ab_verdict_samples", (("endpoint", ENDPOINT),
                                               ("variant", "treatment")))] == 300


def write_customer_case(log: Path, labels: Path, features: list[str], n: int,
                        accuracy: dict[str, float], seed: int) -> dict[str, tuple[int, int]]:
    """Each of `n` customers per variant is scored twice, two hours apart, by the serving
    runtime's writer (the request carries the customer id). One label per customer: an
    hour after the first score (it joins the first), five hours after the second (the
    second), or thirty hours after it (past `within: 1d`: joins nothing). Labels are
    written shuffled. Returns (correct, joined) per variant, worked out from the outcomes."""
    from mlc.runtime.prediction_log import PredictionLogWriter

    rng = np.random.default_rng(seed)
    base = time.time() - 40 * 3600
    label_rows, expected = [], {}
    for v, (variant, rate) in enumerate(sorted(accuracy.items())):
        writer = PredictionLogWriter(str(log), features, 1.0, variant=variant,
                                     entity_keys={"customer_id": "int64",
                                                  "merchant_id": "int64"})
        correct = joined = 0
        for c in range(n):
            customer = 100_000 * (v + 1) + c
            y = int(rng.random() < 0.3)
            right = rng.random(2) < rate  # each score right or wrong on its own
            for k, at in enumerate((base, base + 2 * 3600)):
                p = 0.8 if (y == 1) == right[k] else 0.2
                writer.log(rng.normal(size=(1, len(features))), np.array([p]),
                           VERSIONS[variant], now=at, request_id=f"{customer}-{k}",
                           request={"customer_id": customer, "merchant_id": 7})
            kind = rng.choice(3, p=[0.4, 0.4, 0.2])
            labelled_at = (base + 3600, base + 7 * 3600, base + 32 * 3600)[kind]
            label_rows.append((customer, y, labelled_at))
            if kind < 2:
                joined += 1
                correct += int(right[kind])
        writer.close()
        expected[variant] = (correct, joined)
    frame = pd.DataFrame(label_rows, columns=["customer_id", "is_fraud", "labelled_at"])
    frame.sample(frac=1, random_state=seed).to_parquet(labels)
    return expected


def test_labels_keyed_by_the_customer_join_as_of_their_time(cluster):
    objects = cluster["objects"]
    shutil.rmtree(objects, ignore_errors=True)
    expected = write_customer_case(
        objects / "predictions", cluster["labels"].with_name("customer-outcomes.parquet"),
        features(cluster["root"]), 600, {"control": 0.8, "treatment": 0.9}, seed=11)
    pipeline = f"verdict-{BY_CUSTOMER}"
    [task] = cluster["cluster"].submit(pipeline, f"{pipeline}-asof", {})
    assert task.returncode == 0, task.log
    v = json.loads((objects / "verdicts" / f"{ENDPOINT}.json").read_text())
    assert v["endpoint"] == BY_CUSTOMER, v
    assert (v["join"]["key"], v["join"]["within_seconds"],
            v["join"]["label_time_column"]) == ("customer_id", 86400, "labelled_at")
    for variant, (correct, joined) in expected.items():
        assert v["variants"][variant]["samples"] == joined
        assert v["variants"][variant]["value"] == pytest.approx(correct / joined)
    too_late = 1200 - sum(j for _, j in expected.values())
    assert v["join"]["unmatched_labels"] == too_late > 0
    assert v["join"]["joined"] + v["join"]["unlabelled"] == 2400  # two scores a customer
    metrics = pushed(cluster["url"])
    (k, n) = expected["treatment"]
    assert metrics[("mlc_ab_verdict_metric", (("endpoint", BY_CUSTOMER), ("metric", "accuracy"),
                                              ("variant", "treatment")))] == pytest.approx(k / n)


def test_promote_from_verdict_ends_the_test_with_the_winner(cluster, capsys):
    from mlc.compiler.promote_verdict import VERDICT_REFUSED, promote_verdict

    if "winner" not in cluster or "same" not in cluster:
        pytest.skip("needs the verdicts of the winner and no-difference cases")
    root = cluster["root"]
    overlay = root / "environments" / "dev.yaml"
    before = overlay.read_text()
    for bad, why in ((cluster["same"], "names no winner"),):
        diags = Diagnostics()
        assert promote_verdict(root, "dev", bad, diags) == 1
        assert [d.code for d in diags.errors] == [VERDICT_REFUSED]
        assert why in diags.errors[0].message
    other = json.loads(cluster["winner"].read_text()) | {"project": "another"}
    (cluster["tmp"] / "other.json").write_text(json.dumps(other))
    diags = Diagnostics()
    assert promote_verdict(root, "dev", cluster["tmp"] / "other.json", diags) == 1
    assert "another project" in diags.errors[0].message
    diags = Diagnostics()
    assert promote_verdict(root, "staging", cluster["winner"], diags) == 1
    assert "not `staging`" in diags.errors[0].message
    assert overlay.read_text() == before  # nothing written by a refusal

    # the command line: one environment only; a dry run shows the edit and writes nothing
    from mlc.cli import main

    winner = str(cluster["winner"])
    assert main(["promote", "-C", str(root), "dev", "staging", "--from-verdict", winner]) == 2
    assert main(["promote", "-C", str(root), "dev", "--from-verdict", winner,
                 "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert "+    version: 4" in shown and "+      strategy: rolling" in shown
    assert overlay.read_text() == before

    diags = Diagnostics()
    assert promote_verdict(root, "dev", cluster["winner"], diags) == 0, diags.errors
    after = overlay.read_text()
    assert after.splitlines()[:2] == before.splitlines()[:2]  # the comments stay
    endpoint = yaml.safe_load(after)["serving"][ENDPOINT]
    assert endpoint == {"version": 4, "rollout": {"strategy": "rolling"}}
    project = check_environment(root, "dev", Diagnostics())
    e = project.endpoints[ENDPOINT]
    assert (e.version, e.rollout.strategy, e.rollout.verdict) == (4, "rolling", None)
    assert PIPELINE not in project.pipelines  # the verdict's CronWorkflow goes
