"""The drift_check step: compare reference and current data, export, report, decide.

    reference  "training": the sample of training inputs (and the model's predictions on
               them) stored with the served model version (reference.parquet in the model's
               artifacts; MLC_DRIFT_REFERENCE names a parquet file instead);
               "source": the source's window just before the current window
    current    the endpoint's prediction log over the last `window_seconds` (a pipeline
               parameter; default the check's window), or a source's window

Each input feature is tested (stats.py: Evidently's tests, vectorised), and the prediction
too when both sides have it (`__prediction__`, exported but not counted in the share: the
share is about inputs). The check then

- exports every score, threshold and decision (mlc/metrics.py's DRIFT_* gauges) to the
  Pushgateway at MLC_PUSHGATEWAY_URL, or into `<run dir>/drift/<check>/metrics.prom`;
- writes drift.json (the full-data result) and Evidently's report.html / report.json (from a
  bounded sample, report.py) into `<run dir>/drift/<check>/`;
- exits 0 (no dataset drift), 20 (drift: the workflow may retrain) or 1 (the check could not
  run: empty window, missing, mistyped or all-null columns). A failed check still pushes
  `mlc_drift_check_up 0` and its run time, so that the failure itself is alerted on, and
  leaves the last successful scores in place.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from mlc import metrics as contract
from mlc.compiler import ir
from mlc.runtime import pushgateway, step_summary
from mlc.runtime.prediction_log import PREDICTION_COLUMN, read_log, resolve_uri
from mlc.runtime.step import EXIT_DRIFT, EXIT_FAILED, StepContext, StepFailed

from .stats import (
    METHODS,
    DatasetDrift,
    DriftDataError,
    column_drift,
    dataset_drift,
    infer_kind,
)

PUSHGATEWAY_ENV = pushgateway.PUSHGATEWAY_ENV
REFERENCE_ENV = "MLC_DRIFT_REFERENCE"
PUSH_JOB = "mlc-drift"
REFERENCE_FILE = "reference.parquet"  # model_format.REFERENCE_FILE (that module needs torch)
NUMERIC_TYPES = ("int32", "int64", "float32", "float64", "bool", "unix_timestamp")


def run(ctx: StepContext) -> None:
    name = ctx.pipeline.drift_check
    if not name or name not in ctx.project.drift_checks:
        raise StepFailed(f"pipeline `{ctx.pipeline.name}` names no drift check")
    check = ctx.project.drift_checks[name]
    folder = ctx.run_dir / "drift" / check.k8s_name
    folder.mkdir(parents=True, exist_ok=True)
    exporter = Exporter(check.name, folder)
    started = time.time()
    try:
        reference, current, windows = load_frames(ctx, check, started)
        result, prediction = compare(check, reference, current)
    except Exception as exc:  # every way of not deciding is a failed check, alerted on
        message = (exc.message if isinstance(exc, StepFailed) else str(exc)
                   if isinstance(exc, DriftDataError) else f"{type(exc).__name__}: {exc}")
        try:
            exporter.failed(started)
        except Exception as push_error:  # keep the first error; report the second
            message += f" (and the failure could not be exported: {push_error})"
        _write_json(folder / "drift.json", {"check": check.name, "status": "failed",
                                            "error": message, "started": started})
        raise StepFailed(f"drift check `{check.name}` failed closed: {message}",
                         EXIT_FAILED) from exc
    exporter.succeeded(result, prediction, started)
    summary = {"check": check.name, "status": "drift" if result.dataset_drift else "ok",
               "started": started, "seconds": round(time.time() - started, 3),
               **windows, "reference_rows": len(reference), "current_rows": len(current),
               **result.as_dict(),
               "prediction": None if prediction is None else asdict(prediction)}
    _write_json(folder / "drift.json", summary)
    step_summary.write(ctx, [step_summary.drift(check.name, result.columns,
                                                result.drifted_count, result.share,
                                                result.drift_share, _past_threshold,
                                                str(folder / "report.html"))])
    try:
        from .report import write_report

        write_report(reference, current, result, folder)
    except Exception as exc:  # the decision stands without the picture; say so
        print(f"warning: the Evidently report was not written: {type(exc).__name__}: {exc}")
    text = describe(check, result, prediction, folder)
    if result.dataset_drift:
        raise StepFailed(text, EXIT_DRIFT)
    print(text)


# --- data ------------------------------------------------------------------------------------

def load_frames(ctx: StepContext, check: ir.DriftCheck, now: float
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    window = int(ctx.param("window_seconds") or check.current_window_seconds)
    if window <= 0:
        raise DriftDataError(f"window_seconds must be positive, got {window}")
    since = now - window
    if check.current_source is None:
        endpoint = ctx.project.endpoints[check.endpoint]
        uri = resolve_uri(endpoint.prediction_log_uri)
        current = read_log(uri, since=since, until=now)
        current_from = f"prediction log {uri}"
    else:
        current = source_window(ctx, check, check.current_source, since, now)
        current_from = f"source `{check.current_source}`"
    if len(current) == 0:
        raise DriftDataError(f"no current data: {current_from} has no rows in the last "
                             f"{window} s")
    if check.reference == "training":
        reference, reference_from = training_reference(ctx, check)
    else:
        span = check.reference_window_seconds or window
        reference = source_window(ctx, check, check.reference_source, since - span, since)
        reference_from = f"source `{check.reference_source}`"
    if len(reference) == 0:
        raise DriftDataError(f"no reference data: {reference_from} has no rows")
    return reference, current, {"current_from": current_from, "reference_from": reference_from,
                                "window_seconds": window}


def training_reference(ctx: StepContext, check: ir.DriftCheck) -> tuple[pd.DataFrame, str]:
    override = os.environ.get(REFERENCE_ENV)
    if override:
        return pd.read_parquet(override), override
    from mlc.runtime.serve.loader import download, resolve_version

    model = ctx.project.models[check.model]
    uri = (ctx.project.endpoints[check.endpoint].model_uri if check.endpoint
           else f"models:/{model.registered_name}@{model.production_alias}")
    name, version, _, _ = resolve_version(uri, ctx.mlflow_tracking_uri)
    folder = download(name, version, ctx.mlflow_tracking_uri)
    found = sorted(Path(folder).rglob(REFERENCE_FILE))
    if not found:
        raise DriftDataError(f"models:/{name}/{version} has no {REFERENCE_FILE}: it was "
                             "trained without a reference sample; use `reference: {source: "
                             "...}` for this check")
    return pd.read_parquet(found[0]), f"training sample of models:/{name}/{version}"


def source_window(ctx: StepContext, check: ir.DriftCheck, source_name: str, start: float,
                  end: float) -> pd.DataFrame:
    """The source's rows with start <= event time < end, with the check's features (joined
    from the feature views, as in training, when the source lacks them)."""
    import datetime as dt

    from mlc.runtime import sources
    from mlc.runtime.train import data

    source = ctx.project.sources[source_name]
    # the window goes into a warehouse's query; the filter below still applies to files
    frame = sources.read(ctx, source, start=dt.datetime.fromtimestamp(start, dt.UTC),
                         end=dt.datetime.fromtimestamp(end, dt.UTC)).to_pandas()
    ts = source.timestamp_field
    if ts not in frame.columns:
        raise DriftDataError(f"source `{source_name}` has no timestamp column `{ts}`")
    times = frame[ts]
    if pd.api.types.is_numeric_dtype(times):  # unix seconds
        times = pd.to_datetime(times, unit="s", utc=True)
    elif not pd.api.types.is_datetime64_any_dtype(times):
        raise DriftDataError(f"column `{ts}` of source `{source_name}` holds "
                             f"{times.dtype}, not timestamps")
    elif times.dt.tz is None:
        times = times.dt.tz_localize("UTC")
    frame[ts] = times
    lo, hi = pd.Timestamp(start, unit="s", tz="UTC"), pd.Timestamp(end, unit="s", tz="UTC")
    frame = frame[((times >= lo) & (times < hi)).to_numpy()].reset_index(drop=True)
    fields = [r.field for r in check.features]
    if all(f in frame.columns for f in fields) or len(frame) == 0:
        return frame
    model = ctx.project.models[check.model]
    entities = frame[[*model.entity_keys, ts]].copy()
    if ctx.feast_repo is not None:
        return data.features_from_feast(ctx, model, entities)
    return data.features_from_files(ctx, model, entities, ts)


def validate(reference: pd.DataFrame, current: pd.DataFrame,
             features: list[ir.FeatureRef]) -> None:
    """Fail closed, naming every problem at once: missing, mistyped or all-null columns."""
    problems = []
    for side, frame in (("reference", reference), ("current", current)):
        for ref in features:
            name = ref.field
            if name not in frame.columns:
                problems.append(f"{side} data has no column `{name}`")
                continue
            column = frame[name]
            if column.isna().all():
                problems.append(f"column `{name}` is null in every {side} row")
            elif ref.type in NUMERIC_TYPES and not (pd.api.types.is_numeric_dtype(column)
                                                    or pd.api.types.is_bool_dtype(column)):
                problems.append(f"column `{name}` should be {ref.type} but the {side} data "
                                f"holds {column.dtype}")
    if problems:
        raise DriftDataError("; ".join(problems))


def compare(check: ir.DriftCheck, reference: pd.DataFrame, current: pd.DataFrame):
    validate(reference, current, check.features)
    columns = [r.field for r in check.features]
    result = dataset_drift(reference, current, columns, method=check.method,
                           threshold=check.threshold, drift_share=check.drift_share)
    prediction = None
    if PREDICTION_COLUMN in reference.columns and PREDICTION_COLUMN in current.columns:
        ref, cur = reference[PREDICTION_COLUMN], current[PREDICTION_COLUMN]
        if ref.notna().any() and cur.notna().any():
            prediction = column_drift(PREDICTION_COLUMN, ref, cur, infer_kind(cur),
                                      check.method, check.threshold)
    return result, prediction


# --- output -------------------------------------------------------------------------------------

class Exporter:
    """The DRIFT_* gauges of one check, pushed or written as a textfile."""

    def __init__(self, check: str, folder: Path):
        self.check = check
        self.folder = folder

    def succeeded(self, result: DatasetDrift, prediction, started: float) -> None:
        values = []
        for c in [*result.columns, *([prediction] if prediction else [])]:
            feature = contract.PREDICTION_FEATURE if c.column == PREDICTION_COLUMN else c.column
            values += [(contract.DRIFT_SCORE, c.score, {"feature": feature, "method": c.method}),
                       (contract.DRIFT_THRESHOLD, c.threshold,
                        {"feature": feature, "method": c.method}),
                       (contract.DRIFT_DETECTED, int(c.drifted), {"feature": feature})]
        values += [(contract.DRIFT_SHARE, result.share, {}),
                   (contract.DATASET_DRIFT, int(result.dataset_drift), {}),
                   (contract.DRIFT_LAST_RUN, started, {}),
                   (contract.DRIFT_LAST_SUCCESS, time.time(), {}),
                   (contract.DRIFT_UP, 1, {})]
        self._export(values, replace=True)  # replaces the last run's series: none go stale

    def failed(self, started: float) -> None:
        # only these two: the last good scores and last-success time stay where they are
        self._export([(contract.DRIFT_LAST_RUN, started, {}), (contract.DRIFT_UP, 0, {})],
                     replace=False)

    def _export(self, values: list[tuple[contract.Metric, float, dict]], replace: bool) -> None:
        pushgateway.export(values, job=PUSH_JOB, grouping={"check": self.check},
                           textfile=self.folder / "metrics.prom", replace=replace)


def _past_threshold(c) -> float:
    """How far a drifted feature is past its threshold, in the direction its method drifts:
    a p-value below it (threshold / score), a distance above it (score / threshold)."""
    score, threshold = float(c.score), float(c.threshold)
    if not (math.isfinite(score) and math.isfinite(threshold)) or threshold <= 0:
        return 0.0
    if METHODS[c.method].drifted_when == "ge":
        return score / threshold
    return threshold / score if score > 0 else math.inf


def describe(check: ir.DriftCheck, result: DatasetDrift, prediction, folder: Path) -> str:
    verdict = "DRIFT" if result.dataset_drift else "no drift"
    lines = [f"drift check `{check.name}`: {verdict} ({result.drifted_count} of "
             f"{len(result.columns)} features drifted, share {result.share:.2f}, threshold "
             f"{result.drift_share:.2f})"]
    for c in [*result.columns, *([prediction] if prediction else [])]:
        mark = "drifted" if c.drifted else "ok"
        lines.append(f"  {c.column:30} {c.method:13} score {c.score:.6g} threshold "
                     f"{c.threshold:g}  {mark}")
    lines.append(f"report: {folder / 'report.html'}")
    return "\n".join(lines)


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=_plain) + "\n", "utf-8")
    tmp.replace(path)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
