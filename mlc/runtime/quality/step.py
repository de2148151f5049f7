"""The model_quality step: an online endpoint's metrics over a window, from late labels.

    predictions  the endpoint's prediction log (MLC_PREDICTION_LOG_URI overrides its URI),
                 rows of the last `window_seconds` (a pipeline parameter; default the
                 monitor's window)
    labels       the monitor's labels source, joined exactly on a key or as of the label's
                 time on an entity: the A/B verdict's join (mlc/runtime/verdict/join.py)
    baseline     the training evaluation of the version that made most of the joined
                 predictions: `test_<metric>` of its MLflow run (what the trainer's
                 evaluation logs)

Each metric is computed as the verdict computes it (mlc/runtime/verdict/stats.py), and its
drop is how much worse it is than the baseline, in the metric's units (positive: worse).
The step writes quality.json into `<run dir>/quality/<monitor>/`, pushes the QUALITY_*
gauges of mlc/metrics.py to MLC_PUSHGATEWAY_URL (or writes them beside the JSON) and exits
0, also when fewer than `minSamples` predictions have a label yet (`waiting`: nothing is
scored, and the drop alert stays silent); 1 when it could not run (unreadable log, labels
or registry, a version without its evaluation), after pushing `mlc_model_quality_up 0`.
The alert ModelQualityDropped fires on a drop past `maxDrop`.
"""

from __future__ import annotations

import time
from collections import Counter

import pandas as pd

from mlc import metrics as contract
from mlc.compiler import ir
from mlc.runtime import pushgateway
from mlc.runtime.prediction_log import (
    PREDICTION_COLUMN,
    TIMESTAMP_COLUMN,
    VERSION_COLUMN,
    read_log,
    resolve_uri,
)
from mlc.runtime.step import EXIT_FAILED, StepContext, StepFailed
from mlc.runtime.verdict import stats
from mlc.runtime.verdict.join import LABEL_COLUMN, JoinError, labelled_predictions
from mlc.runtime.verdict.step import read_labels, write_json

PUSH_JOB = "mlc-model-quality"
KIND = "ModelQuality"
VERSION = 1
ALPHA = 0.05  # the level of the reported confidence intervals


def run(ctx: StepContext) -> None:
    monitor = next((q for q in ctx.project.quality_monitors.values()
                    if q.pipeline == ctx.pipeline.name), None)
    if monitor is None:
        raise StepFailed(f"pipeline `{ctx.pipeline.name}` names no quality monitor")
    endpoint = ctx.project.endpoints[monitor.endpoint]
    folder = ctx.run_dir / "quality" / monitor.k8s_name
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        window = int(ctx.param("window_seconds") or monitor.window_seconds)
        if window <= 0:
            raise StepFailed(f"window_seconds must be positive, got {window}")
        log = read_log(resolve_uri(endpoint.prediction_log_uri), since=started - window,
                       until=started)
        if len(log) == 0:  # nothing logged yet: no data, not an error
            log = pd.DataFrame(columns=[monitor.key, PREDICTION_COLUMN, VERSION_COLUMN,
                                        TIMESTAMP_COLUMN])
        labels = read_labels(ctx, monitor.labels_source, started - window)
        joined, counts = labelled_predictions(
            log, labels, key=monitor.key, label_column=monitor.label_column,
            timestamp=ctx.project.sources[monitor.labels_source].timestamp_field,
            within_seconds=monitor.within_seconds)
        result = score(ctx, monitor, endpoint, joined)
    except (StepFailed, JoinError, stats.MetricError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, StepFailed) else str(exc)
        try:
            _export(monitor, [(contract.QUALITY_LAST_RUN, started, {}),
                              (contract.QUALITY_UP, 0, {})], folder, replace=False)
        except Exception as push_error:  # keep the first error; report the second
            message += f" (and the failure could not be exported: {push_error})"
        write_json(folder / "quality.json", {
            "kind": KIND, "version": VERSION, "monitor": monitor.name, "status": "failed",
            "error": message, "started": started})
        raise StepFailed(f"quality monitor `{monitor.name}` failed: {message}",
                         EXIT_FAILED) from exc
    result.update(kind=KIND, version=VERSION, status="ok", project=ctx.project.name,
                  environment=ctx.project.env, monitor=monitor.name,
                  endpoint=endpoint.name, started=started, run_id=ctx.run_id,
                  window_seconds=window, min_samples=monitor.min_samples,
                  max_drop=monitor.max_drop,
                  join={"key": monitor.key, "labels_source": monitor.labels_source,
                        "label_column": monitor.label_column,
                        "within_seconds": monitor.within_seconds, **counts.as_dict()})
    _export(monitor, gauges(result, started), folder, replace=True)
    write_json(folder / "quality.json", result)
    print(describe(result, folder / "quality.json"))


def score(ctx: StepContext, monitor: ir.QualityMonitor, endpoint: ir.Endpoint,
          joined: pd.DataFrame) -> dict:
    """The state, metrics and baselines of the joined rows."""
    if len(joined) < monitor.min_samples:
        return {"state": "waiting", "samples": len(joined), "served_version": None,
                "metrics": {}}
    y = joined[LABEL_COLUMN].to_numpy(dtype=float)
    p = joined[PREDICTION_COLUMN].to_numpy(dtype=float)
    versions = Counter(joined[VERSION_COLUMN].dropna().astype(str))
    if not versions:
        raise StepFailed("the joined predictions name no model version")
    served = max(versions, key=lambda v: (versions[v], v))  # most rows; ties: the last
    baseline = training_metrics(ctx, endpoint.registered_name, served)
    out = {}
    for metric in monitor.metrics:
        e = stats.estimate(metric, y, p, ALPHA)
        key = f"test_{metric}"
        if key not in baseline:
            raise StepFailed(f"version {served} of `{endpoint.registered_name}` has no "
                             f"training evaluation of {metric} (`{key}` in its MLflow run)")
        base = baseline[key]
        drop = base - e.value if monitor.higher_is_better[metric] else e.value - base
        out[metric] = {"value": e.value, "ci": [e.ci_low, e.ci_high], "baseline": base,
                       "drop": drop, "dropped": bool(drop > monitor.max_drop)}
    state = "dropped" if any(m["dropped"] for m in out.values()) else "ok"
    return {"state": state, "samples": len(joined), "served_version": served,
            "versions": dict(sorted(versions.items())), "metrics": out}


def training_metrics(ctx: StepContext, registered_name: str, version: str) -> dict[str, float]:
    """The metrics of the MLflow run that produced this registered version."""
    from mlflow import MlflowClient

    from mlc.runtime.mlflow_plugins import skip_unused_header_plugins

    skip_unused_header_plugins()
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri,
                          registry_uri=ctx.mlflow_tracking_uri)
    try:
        run_id = client.get_model_version(registered_name, version).run_id
        if not run_id:
            raise StepFailed(f"version {version} of `{registered_name}` has no MLflow run")
        return dict(client.get_run(run_id).data.metrics)
    except StepFailed:
        raise
    except Exception as exc:  # the registry down or the version gone
        raise StepFailed(f"cannot read the training evaluation of version {version} of "
                         f"`{registered_name}` at {ctx.mlflow_tracking_uri}: {exc}") from exc


def gauges(result: dict, started: float) -> list[pushgateway.Value]:
    out: list[pushgateway.Value] = [
        (contract.QUALITY_SAMPLES, result["samples"], {}),
        (contract.QUALITY_WAITING, int(result["state"] == "waiting"), {})]
    for metric, m in sorted(result["metrics"].items()):
        labels = {"metric": metric}
        out += [(contract.QUALITY_VALUE, m["value"], labels),
                (contract.QUALITY_BASELINE, m["baseline"], labels),
                (contract.QUALITY_DROP, m["drop"], labels)]
    return out + [(contract.QUALITY_LAST_RUN, started, {}), (contract.QUALITY_UP, 1, {})]


def _export(monitor: ir.QualityMonitor, values: list[pushgateway.Value], folder,
            replace: bool) -> None:
    # replace: a run's series replace the last run's whole (a metric dropped from ml.yaml,
    # or a waiting run's missing figures, leave no stale series behind)
    pushgateway.export([(m, v, {"endpoint": monitor.endpoint, **labels})
                        for m, v, labels in values], job=PUSH_JOB,
                       grouping={"monitor": monitor.name}, textfile=folder / "metrics.prom",
                       replace=replace)


def describe(result: dict, target) -> str:
    head = {"waiting": f"waiting for labels ({result['samples']} of minSamples "
                       f"{result['min_samples']})",
            "ok": "within maxDrop", "dropped": "DROPPED"}[result["state"]]
    lines = [f"model quality of `{result['endpoint']}` ({result['monitor']}): {head}"]
    for metric, m in sorted(result["metrics"].items()):
        lines.append(f"  {metric:10} {m['value']:.6g} (training {m['baseline']:.6g}, drop "
                     f"{m['drop']:+.4g}, maxDrop {result['max_drop']:g})")
    lines.append(f"report: {target}")
    return "\n".join(lines)
