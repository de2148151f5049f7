"""The verdict's parts on their own, fast: the tests against independent computations, the
join's rules, the decision's rules, and the exit codes of a run with no data or no labels.
tests/test_ab_verdict.py runs the whole step as its CronWorkflow's container."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats as sps

from mlc.compiler import ir

from . import argo_projects as ap

pd = pytest.importorskip("pandas", reason="the verdict runtime needs pandas (mlc[drift])")
stats = pytest.importorskip("mlc.runtime.verdict.stats")
from mlc.runtime.prediction_log import PredictionLogWriter  # noqa: E402
from mlc.runtime.step import (  # noqa: E402
    EXIT_FAILED,
    StepFailed,
    build_context,
    run_step,
)
from mlc.runtime.verdict.join import (  # noqa: E402
    LABEL_COLUMN,
    JoinError,
    labelled_predictions,
)
from mlc.runtime.verdict.step import decide  # noqa: E402


def scores(n: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(float)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + separation * (2 * y - 1))))
    return y, np.round(p, 2)  # rounded: ties, which DeLong counts one half


def delong_by_pairs(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """AUC and its DeLong variance from every (positive, negative) pair: O(m n)."""
    pos, neg = p[y == 1], p[y == 0]
    kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    return kernel.mean(), v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)


def test_delong_matches_the_pairwise_definition_and_sklearn():
    from sklearn.metrics import roc_auc_score

    y, p = scores(900, 0.8, seed=1)
    y0, p0 = scores(800, 0.5, seed=2)
    auc, var = stats.delong(y, p)
    auc_pairs, var_pairs = delong_by_pairs(y, p)
    assert auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert (auc, var) == pytest.approx((auc_pairs, var_pairs), rel=1e-9)
    c = stats.compare("roc_auc", y, p, y0, p0, 0.05)
    auc0, var0 = delong_by_pairs(y0, p0)
    z = (auc_pairs - auc0) / math.sqrt(var_pairs + var0)
    assert c.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)
    assert c.p_value < 0.05 and c.ci_low > 0


def welch(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's two-sided p-value, by its formula."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return 2 * sps.t.sf(abs(t), dof)


@pytest.mark.parametrize("metric", ["mae", "rmse", "log_loss"])
def test_losses_are_compared_by_welchs_test(metric):
    from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error

    rng = np.random.default_rng(5)
    if metric == "log_loss":
        y, p = scores(1500, 0.9, seed=3)
        y0, p0 = scores(1200, 0.6, seed=4)
        value = log_loss(y, np.clip(p, stats.EPS, 1 - stats.EPS), labels=[0, 1])
        losses = -(y * np.log(np.clip(p, stats.EPS, 1)) +
                   (1 - y) * np.log(np.clip(1 - p, stats.EPS, 1)))
        losses0 = -(y0 * np.log(np.clip(p0, stats.EPS, 1)) +
                    (1 - y0) * np.log(np.clip(1 - p0, stats.EPS, 1)))
    else:
        y, y0 = rng.normal(10, 2, 1500), rng.normal(10, 2, 1200)
        p, p0 = y + rng.normal(0, 1.0, 1500), y0 + rng.normal(0, 1.2, 1200)
        square = metric == "rmse"
        value = (math.sqrt(mean_squared_error(y, p)) if square else mean_absolute_error(y, p))
        losses = (y - p) ** 2 if square else np.abs(y - p)
        losses0 = (y0 - p0) ** 2 if square else np.abs(y0 - p0)
    e = stats.estimate(metric, y, p, 0.05)
    assert e.value == pytest.approx(value, rel=1e-9)
    assert e.ci_low < e.value < e.ci_high
    c = stats.compare(metric, y, p, y0, p0, 0.05)
    assert c.p_value == pytest.approx(welch(losses, losses0), rel=1e-6)
    assert c.p_value < 0.05 and c.difference < 0  # the variant's errors are smaller
    assert c.ci_low < c.difference < c.ci_high


def test_metrics_refuse_what_the_log_cannot_give():
    y = np.array([0.0, 1.0, 2.0, 1.0])
    with pytest.raises(stats.MetricError, match="labels 0 and 1"):
        stats.delong(y, np.array([0.1, 0.9, 0.5, 0.4]))
    with pytest.raises(stats.MetricError, match="probabilities"):
        stats.row_losses("log_loss", np.array([0.0, 1.0]), np.array([0.5, 3.0]))
    # a multi-class model logs the class index: accuracy compares it with the label
    assert stats.correct(y, np.array([0.0, 1.0, 2.0, 0.0])).tolist() == [1, 1, 1, 0]


def log_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["request_id", "__prediction__", "variant",
                                       "model_version"])


def test_the_join_keeps_one_label_per_unambiguous_key():
    log = log_frame([("r1", 0.9, "a", "1"), ("r2", 0.2, "b", "2"), ("r3", 0.4, "a", "1"),
                     ("r3", 0.6, "a", "1"),  # one request of two rows: ambiguous
                     ("r4", 0.7, None, "1"),  # answered outside the A/B test
                     ("r5", 0.1, "b", "2")])  # no label yet
    labels = pd.DataFrame({"request_id": ["r1", "r2", "r2", "r3", "r4"],
                           "y": [1, 0, 1, 0, 1], "at": [5, 1, 9, 2, 3]})
    joined, counts = labelled_predictions(log, labels, key="request_id", label_column="y",
                                          timestamp="at", variants=True)
    assert joined["request_id"].tolist() == ["r1", "r2"]
    assert joined[LABEL_COLUMN].tolist() == [1, 1]  # r2: the later label
    # r3's and r4's labels reach no unambiguous A/B prediction
    assert counts.as_dict() == {"predictions": 5, "labels": 5, "joined": 2, "unlabelled": 1,
                                "ambiguous": 2, "unmatched_labels": 2}
    # ids written as numbers on one side and text on the other still match
    numeric = log_frame([(7.0, 0.9, "a", "1")]).astype({"request_id": float})
    joined, _ = labelled_predictions(numeric, pd.DataFrame({"request_id": ["7"], "y": [1]}),
                                     key="request_id", label_column="y")
    assert len(joined) == 1
    with pytest.raises(JoinError, match="no column `y`"):
        labelled_predictions(log, labels.drop(columns=["y"]), key="request_id",
                             label_column="y")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> ir.ResolvedProject:
    return ap.resolve(tmp_path_factory.mktemp("ab"), ap.project(ap.AB_VERDICT))


def with_verdict(project: ir.ResolvedProject, variants: list[str], **settings):
    e = project.endpoints["churn-ab"]
    arms = [ir.Variant(name=n, alias=None, version=i + 1, weight=100 // len(variants),
                       model_uri=f"models:/churn/{i + 1}") for i, n in enumerate(variants)]
    verdict = e.rollout.verdict.model_copy(update=settings)
    return e.model_copy(update={"rollout": e.rollout.model_copy(update={
        "variants": arms, "verdict": verdict})})


def joined_rows(accuracy: dict[str, float], n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for i, (variant, acc) in enumerate(accuracy.items()):
        y = (rng.random(n) < 0.5).astype(int)
        right = rng.random(n) < acc
        parts.append(pd.DataFrame({"variant": variant, "model_version": str(i + 1),
                                   "__prediction__": np.where(right, y, 1 - y) * 0.8 + 0.1,
                                   LABEL_COLUMN: y}))
    return pd.concat(parts, ignore_index=True)


def counts_of(frame):
    from mlc.runtime.verdict.join import JoinCounts

    return JoinCounts(len(frame), len(frame), len(frame), 0, 0)


def test_the_decision_rules(project):
    e = with_verdict(project, ["a", "b", "c"], metric="accuracy", test="two-proportion-z",
                     higher_is_better=True, baseline="a", min_samples=1000)
    # b and c both beat a; c by more: c wins, each tested at alpha / 2
    rows = joined_rows({"a": 0.70, "b": 0.76, "c": 0.80}, 2000, seed=1)
    v = decide(project, e, rows, counts_of(rows))
    assert (v["decision"], v["winner"], v["alpha_per_comparison"]) == ("winner", "c", 0.025)
    assert v["winner_model"] == {"version": 3, "alias": None, "model_uri": "models:/churn/3",
                                 "model_versions": ["3"]}
    # the baseline beats every other variant: the baseline wins
    rows = joined_rows({"a": 0.80, "b": 0.70, "c": 0.72}, 2000, seed=2)
    assert decide(project, e, rows, counts_of(rows))["winner"] == "a"
    # one variant worse, one the same: no winner
    rows = joined_rows({"a": 0.80, "b": 0.70, "c": 0.80}, 2000, seed=3)
    v = decide(project, e, rows, counts_of(rows))
    assert (v["decision"], v["winner"]) == ("no-difference", None)
    # one variant short of minSamples: nothing is tested
    rows = joined_rows({"a": 0.80, "b": 0.70, "c": 0.90}, 2000, seed=4)
    rows = rows[~((rows["variant"] == "c") & (rows.index % 3 != 0))]
    v = decide(project, e, rows, counts_of(rows))
    assert (v["decision"], v["short_of_samples"], v["comparisons"]) == (
        "waiting", ["c"], {})


def test_a_run_without_enough_labels_waits_and_succeeds_and_without_labels_exits_1(
        project, tmp_path, monkeypatch, capsys):
    pipeline = project.endpoints["churn-ab"].rollout.verdict.pipeline
    env = {"MLC_RUN_DIR": str(tmp_path / "run"), "MLC_DATA_ROOT": str(tmp_path),
           "MLC_PREDICTION_LOG_URI": str(tmp_path / "log"),
           "MLC_VERDICT_URI": str(tmp_path / "published.json")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLC_PUSHGATEWAY_URL", raising=False)
    (tmp_path / "data").mkdir()
    pd.DataFrame({"request_id": ["x"], "label": [1], "event_timestamp": [0]}).to_parquet(
        tmp_path / "data" / "outcomes.parquet")
    writer = PredictionLogWriter(str(tmp_path / "log"), ["clicks"], 1.0, variant="a")
    writer.log(np.zeros((3, 1)), np.full(3, 0.5), "1", request_id="x")
    writer.close()
    run_step(build_context(project, pipeline, "verdict", environ=env))  # no exception
    assert "waiting for labels" in capsys.readouterr().out
    assert (tmp_path / "run" / "verdict-decision").read_text() == "waiting\n"
    # `mlc run` shows the step that exited 0 by the decision it recorded
    from mlc.local.run import succeeded

    step = project.pipelines[pipeline].steps[0]
    assert succeeded(step, tmp_path / "run") == ("waiting",
                                                 "not enough labelled predictions yet")
    folder = tmp_path / "run" / "verdict" / "churn-ab"
    prom = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in
            text_string_to_metric_families((folder / "metrics.prom").read_text())
            for s in f.samples}
    assert prom[("mlc_ab_verdict_decision", (("decision", "waiting"),
                                             ("endpoint", "churn-ab")))] == 1
    assert prom[("mlc_ab_verdict_up", (("endpoint", "churn-ab"),))] == 1
    # the key was logged three times (one request of three rows): ambiguous, not joined
    published = json.loads((tmp_path / "published.json").read_text())
    assert (published["decision"], published["join"]["ambiguous"],
            published["join"]["joined"]) == ("waiting", 3, 0)

    # the same step, found by the endpoint's name (the command for a run by hand)
    from mlc.runtime.verdict.command import main

    (tmp_path / "project.json").write_text(project.model_dump_json())
    assert main(["--project", str(tmp_path / "project.json"), "--endpoint", "churn-ab",
                 "-p", "window_seconds=3600"]) == 0
    assert main(["--project", str(tmp_path / "project.json"), "--endpoint", "churn-api"]) == 1

    (tmp_path / "data" / "outcomes.parquet").unlink()
    with pytest.raises(StepFailed) as err:
        run_step(build_context(project, pipeline, "verdict", environ=env))
    assert err.value.exit_code == EXIT_FAILED and "does not exist" in err.value.message
    prom = (folder / "metrics.prom").read_text()
    assert 'mlc_ab_verdict_up{endpoint="churn-ab"} 0.0' in prom
    assert (tmp_path / "run" / "verdict-decision").read_text() == "failed\n"
