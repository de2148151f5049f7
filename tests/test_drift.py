"""The drift runtime: scores and decisions equal to Evidently 0.7's DataDriftPreset (to 1e-9)
on numeric and categorical, small and large, drifted and stable data, with every method;
failing closed on bad data; and the drift_check step end to end (prediction log, model
reference from a real MLflow registry, Pushgateway and textfile export, Evidently report,
exit codes)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats as sps

from mlc import metrics as contract
from mlc.compiler import ir
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime.drift import stats
from mlc.runtime.prediction_log import PREDICTION_COLUMN, PredictionLogWriter
from mlc.runtime.step import EXIT_DRIFT, EXIT_FAILED, StepFailed, build_context, run_step

from .conftest import ROOT

PIPELINE, STEP, CHECK = "drift-fraud-inputs", "drift-check", "fraud-inputs"
DRIFT_NAMES = {m.name for m in contract.CONTRACT if m.exporter == "drift"}


def frames(n: int, m: int, shift: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every column kind Evidently tells apart: floats, many and few integers, binary,
    strings, a float with three values, and missing values."""
    rng = np.random.default_rng(seed)

    def one(rows: int, s: float) -> pd.DataFrame:
        return pd.DataFrame({
            "num": rng.normal(s, 1, rows),
            "many_ints": rng.integers(0, 1000 + int(300 * s), rows),
            "few_ints": rng.integers(0, 4, rows),
            "binary": (rng.random(rows) < 0.5 + s / 5).astype(int),
            "text": rng.choice(["x", "y", "z"] if s else ["x", "y", "z", "w"], rows),
            "three_floats": rng.choice([0.5, 1.5, 2.5], rows),
            "gaps": np.where(rng.random(rows) < 0.15, np.nan, rng.normal(s, 1, rows)),
        })

    return one(n, 0.0), one(m, shift)


def evidently(reference: pd.DataFrame, current: pd.DataFrame, **options):
    from evidently import Report
    from evidently.presets import DataDriftPreset

    result = Report([DataDriftPreset(**options)]).run(current, reference).dict()
    scores, count = {}, None
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            scores[config["column"]] = (config["method"], config["threshold"], metric["value"])
        else:
            count = metric["value"]
    return scores, count


def assert_same(ours: stats.DatasetDrift, theirs, count) -> None:
    assert set(theirs) == {c.column for c in ours.columns}
    for c in ours.columns:
        display, threshold, score = theirs[c.column]
        assert display in (stats.METHODS[c.method].display, c.method), c  # chosen or given
        assert threshold == pytest.approx(c.threshold)
        assert abs(c.score - score) <= 1e-9, (c, score)
    assert ours.drifted_count == count["count"]
    assert ours.share == pytest.approx(count["share"])


@pytest.mark.slow
@pytest.mark.parametrize("n, m, shift", [
    (600, 400, 0.0), (600, 300, 0.6), (800, 5000, 0.2),  # small reference: p-value tests
    (5000, 3000, 0.0), (5000, 4000, 0.3), (20000, 20000, 0.1),  # large: distances
])
def test_auto_gives_evidentlys_tests_scores_and_decisions(n, m, shift):
    reference, current = frames(n, m, shift, seed=n + m)
    ours = stats.dataset_drift(reference, current, list(reference.columns))
    assert_same(ours, *evidently(reference, current))
    methods = {c.column: c.method for c in ours.columns}
    if n <= 1000:
        assert methods["num"] == "ks" and methods["binary"] == "z"
        assert methods["text"] == "chisquare" and methods["three_floats"] == "chisquare"
    else:
        assert methods["num"] == "wasserstein" and methods["text"] == "jensenshannon"
        assert methods["three_floats"] == "jensenshannon"


@pytest.mark.slow
@pytest.mark.parametrize("method, columns, threshold", [
    ("psi", None, None), ("kl_div", None, 0.02), ("jensenshannon", None, 0.05),
    ("wasserstein", ["num", "many_ints", "gaps", "three_floats"], None),
    ("ks", ["num", "many_ints", "gaps", "three_floats"], 0.01),
    ("chisquare", ["few_ints", "binary", "text"], None), ("z", ["binary"], None),
])
def test_every_method_matches_evidently(method, columns, threshold):
    reference, current = frames(3000, 2000, 0.2, seed=7)
    columns = columns or list(reference.columns)
    reference, current = reference[columns], current[columns]
    ours = stats.dataset_drift(reference, current, columns, method=method, threshold=threshold,
                               drift_share=0.3)
    assert_same(ours, *evidently(reference, current, method=method, threshold=threshold,
                                 drift_share=0.3))


@pytest.mark.parametrize("n, m", [(1000, 1000), (1000, 701), (37, 1500), (5, 3)])
def test_quantile_wasserstein_equals_scipy(n, m):
    rng = np.random.default_rng(n * m)
    for u, v in [(rng.normal(size=n), rng.normal(0.2, 2, size=m)),
                 (rng.integers(0, 6, n).astype(float), rng.integers(0, 9, m).astype(float))]:
        expected = sps.wasserstein_distance(u, v)
        assert abs(stats.wasserstein_sorted(np.sort(u), np.sort(v)) - expected) <= 1e-12


def test_bad_columns_fail_with_a_clear_message():
    good = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    with pytest.raises(stats.DriftDataError, match="column `a` has no values in the current"):
        stats.column_drift("a", good["a"], pd.Series([np.nan, np.inf]), "numerical")
    with pytest.raises(stats.DriftDataError, match="compares numbers"):
        stats.column_drift("s", pd.Series(["x", "y"]), pd.Series(["x", "x"]), "categorical",
                           method="ks")
    with pytest.raises(stats.DriftDataError, match="unknown drift method"):
        stats.column_drift("a", good["a"], good["a"], "numerical", method="t-test")
    with pytest.raises(stats.DriftDataError, match="cannot compare"):
        stats.infer_kind(pd.Series(pd.to_datetime(["2024-01-01"])))


# --- the step -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dev() -> ir.ResolvedProject:
    project = check_environment(ROOT, "dev", Diagnostics())
    assert project is not None
    return project


def features(project: ir.ResolvedProject) -> list[str]:
    return [r.field for r in project.drift_checks[CHECK].features]


def sample(project, rows: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f: rng.normal(10 + shift * 3, 3, rows) for f in features(project)})
    for f in ("txn_count_7d", "account_age_days", "txn_count_30d"):
        frame[f] = rng.poisson(20 + 10 * shift, rows).astype("int64")
    frame[PREDICTION_COLUMN] = rng.beta(2, 8 - 4 * shift, rows)
    return frame


def log_predictions(folder: Path, frame: pd.DataFrame, names: list[str]) -> None:
    writer = PredictionLogWriter(str(folder), names, 1.0)
    writer.log(frame[names].to_numpy(dtype=float), frame[PREDICTION_COLUMN].to_numpy(), "3")
    writer.close()


def run_check(project, env: dict[str, str], monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ctx = build_context(project, PIPELINE, STEP, environ=env)
    run_step(ctx)
    return ctx


def read_prom(path: Path) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(path.read_text()) for s in f.samples}


@pytest.mark.slow
def test_step_decides_exports_and_reports(tmp_path, dev, monkeypatch):
    names = features(dev)
    reference = sample(dev, 5000, 0.0, seed=1)
    reference.to_parquet(tmp_path / "reference.parquet")
    env = {"MLC_RUN_DIR": str(tmp_path / "stable"), "MLC_DRIFT_REFERENCE":
           str(tmp_path / "reference.parquet"), "MLC_PREDICTION_LOG_URI": str(tmp_path / "log"),
           "MLC_DATA_ROOT": str(ROOT)}
    log_predictions(tmp_path / "log", sample(dev, 3000, 0.0, seed=2), names)
    run_check(dev, env, monkeypatch)  # no drift: returns (exit 0)
    out = tmp_path / "stable" / "drift" / CHECK
    values = read_prom(out / "metrics.prom")
    assert {n for n, _ in values} <= {f"{n}" for n in DRIFT_NAMES}
    assert values[("mlc_dataset_drift", (("check", CHECK),))] == 0
    assert values[("mlc_drift_check_up", (("check", CHECK),))] == 1
    assert (tmp_path / "stable" / "drift" / CHECK / "report.html").stat().st_size > 10_000
    assert (out / "report.json").read_text().startswith("{")

    # drifted current data: exit code 20, per-feature scores equal to the statistics module
    drifted = sample(dev, 3000, 1.0, seed=3)
    log_predictions(tmp_path / "log2", drifted, names)
    env |= {"MLC_RUN_DIR": str(tmp_path / "drift"), "MLC_PREDICTION_LOG_URI":
            str(tmp_path / "log2")}
    with pytest.raises(StepFailed) as err:
        run_check(dev, env, monkeypatch)
    assert err.value.exit_code == EXIT_DRIFT and "DRIFT" in err.value.message
    values = read_prom(tmp_path / "drift" / "drift" / CHECK / "metrics.prom")
    assert values[("mlc_dataset_drift", (("check", CHECK),))] == 1
    expected = stats.dataset_drift(reference, drifted, names)
    for c in expected.columns:
        key = ("mlc_drift_score", (("check", CHECK), ("feature", c.column),
                                   ("method", c.method)))
        assert values[key] == pytest.approx(c.score, abs=1e-12)
    assert ("mlc_drift_detected", (("check", CHECK), ("feature", contract.PREDICTION_FEATURE))
            ) in values


@pytest.mark.slow
def test_step_fails_closed_and_says_so(tmp_path, dev, monkeypatch):
    names = features(dev)
    reference = sample(dev, 500, 0.0, seed=1)
    current = sample(dev, 500, 0.0, seed=2)
    cases = {
        "empty": (None, "no current data"),
        "missing": (current.drop(columns=["merchant_risk"]), "no column `merchant_risk`"),
        "all-null": (current.assign(amount_avg_7d=np.nan), "`amount_avg_7d` is null in every"),
        "mistyped": (current.assign(txn_count_30d="many"), "`txn_count_30d` should be int64"),
    }
    for case, (frame, message) in cases.items():
        ref_path = tmp_path / f"{case}-reference.parquet"
        (frame if case == "mistyped" else reference).to_parquet(ref_path)
        log = tmp_path / f"{case}-log"
        if frame is not None and case != "mistyped":
            present = [n for n in names if n in frame.columns]
            writer = PredictionLogWriter(str(log), present, 1.0)
            writer.log(frame[present].to_numpy(dtype=float), frame[PREDICTION_COLUMN].to_numpy(),
                       "3")
            writer.close()
        elif case == "mistyped":
            log_predictions(log, current, names)
        env = {"MLC_RUN_DIR": str(tmp_path / case), "MLC_DRIFT_REFERENCE": str(ref_path),
               "MLC_PREDICTION_LOG_URI": str(log), "MLC_DATA_ROOT": str(ROOT)}
        with pytest.raises(StepFailed) as err:
            run_check(dev, env, monkeypatch)
        assert err.value.exit_code == EXIT_FAILED, case
        assert message in err.value.message and "failed closed" in err.value.message, (
            case, err.value.message)
        values = read_prom(tmp_path / case / "drift" / CHECK / "metrics.prom")
        assert values[("mlc_drift_check_up", (("check", CHECK),))] == 0, case
        assert ("mlc_drift_last_run_timestamp_seconds", (("check", CHECK),)) in values


class _Pushgateway(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, str]] = []

    def _take(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_PUT = do_POST = _take

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_step_reads_the_models_reference_and_pushes(tmp_path, dev, monkeypatch):
    """Reference: the sample stored with the served model version in a real MLflow
    registry. Export: a real HTTP endpoint speaking the Pushgateway protocol."""
    import mlflow

    from mlc.runtime import model_format
    from mlc.runtime.train.tracking import PYFUNC_CODE

    names = features(dev)
    model = dev.models["fraud-classifier"]
    spec = model_format.make_spec(task="classification", features=names, feature_refs=names,
                                  hidden_layers=[4], dropout=0.0, fill=[0.0] * len(names),
                                  mean=[0.0] * len(names), std=[1.0] * len(names), label="y",
                                  classes=[0, 1])
    model_format.save_model(tmp_path / "model", spec,
                            model_format.build_module(spec).state_dict(),
                            reference=sample(dev, 2000, 0.0, seed=4))
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE),
                                       artifacts={model_format.ARTIFACT_KEY:
                                                  str(tmp_path / "model")},
                                       pip_requirements=["numpy"])
    version = mlflow.register_model(info.model_uri, model.registered_name).version
    mlflow.MlflowClient().set_registered_model_alias(model.registered_name,
                                                     model.production_alias, version)
    log_predictions(tmp_path / "log", sample(dev, 2000, 1.0, seed=5), names)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pushgateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        env = {"MLC_RUN_DIR": str(tmp_path / "run"), "MLFLOW_TRACKING_URI": tracking,
               "MLC_PREDICTION_LOG_URI": str(tmp_path / "log"), "MLC_PUSHGATEWAY_URL": url,
               "MLC_DATA_ROOT": str(ROOT)}
        with pytest.raises(StepFailed) as err:
            run_check(dev, env, monkeypatch)
        assert err.value.exit_code == EXIT_DRIFT
        # a failing run adds to the group (POST), keeping the last scores
        monkeypatch.setenv("MLC_PARAM_WINDOW_SECONDS", "1")
        time.sleep(1.1)
        with pytest.raises(StepFailed) as err:
            run_check(dev, env | {"MLC_PARAM_WINDOW_SECONDS": "1"}, monkeypatch)
        assert err.value.exit_code == EXIT_FAILED
    finally:
        server.shutdown()
    (put, path, body), (post, path2, body2) = _Pushgateway.received[-2:]
    assert (put, post) == ("PUT", "POST")
    assert path == path2 == f"/metrics/job/mlc-drift/check/{CHECK}"
    pushed = {f.name for f in text_string_to_metric_families(body)}
    assert pushed == DRIFT_NAMES
    assert "mlc_drift_check_up 0.0" in body2.replace(f'{{check="{CHECK}"}}', "")
    assert "mlc_drift_score" not in body2


@pytest.mark.slow
def test_step_compares_source_windows(tmp_path, dev, monkeypatch):
    """Reference and current as windows of a source that has only entity keys and time:
    the features are joined from the feature views as of each row, as in training."""
    import shutil

    now = pd.Timestamp.now(tz="UTC")
    (tmp_path / "data").mkdir()
    shift = None
    for name in ("transactions", "customer_daily", "merchant_daily"):
        frame = pd.read_parquet(ROOT / "data" / f"{name}.parquet")
        if shift is None:  # the newest transaction becomes an hour old
            shift = now - pd.Timedelta(hours=1) - frame["event_timestamp"].max()
        frame["event_timestamp"] = frame["event_timestamp"] + shift
        frame.to_parquet(tmp_path / "data" / f"{name}.parquet")
    shutil.copy(ROOT / "ml.yaml", tmp_path / "ml.yaml")
    day = 86400
    check = dev.drift_checks[CHECK].model_copy(update={
        "current_source": "transactions", "current_window_seconds": 14 * day,
        "reference": "source", "reference_source": "transactions",
        "reference_window_seconds": 30 * day})
    project = dev.model_copy(update={"drift_checks": {CHECK: check}})
    env = {"MLC_RUN_DIR": str(tmp_path / "run"), "MLC_DATA_ROOT": str(tmp_path)}
    try:
        run_check(project, env, monkeypatch)
        code = 0
    except StepFailed as err:
        code = err.exit_code
        assert code == EXIT_DRIFT, err.message
    result = json.loads((tmp_path / "run" / "drift" / CHECK / "drift.json").read_text())
    assert result["status"] == ("drift" if code else "ok")
    assert result["current_from"] == "source `transactions`"
    assert 0 < result["current_rows"] < result["reference_rows"]
    assert [c["column"] for c in result["columns"]] == features(dev)
    assert result["prediction"] is None  # a source window has no predictions
