"""The ab_verdict step: join the A/B endpoint's prediction log with the labels, decide.

    predictions  the endpoint's prediction log (MLC_PREDICTION_LOG_URI overrides its URI),
                 rows of the last `window_seconds` (a pipeline parameter; default the
                 verdict's window) that an A/B variant answered
    labels       the verdict's labels source (mlc/runtime/sources), joined on the key
                 (join.py)

Then the metric per variant with its confidence interval, each variant tested against the
baseline (stats.py), and one decision:

    winner         a variant is significantly better than the baseline (the best of those
                   that are), or the baseline is significantly better than all
    no-difference  every variant has `minSamples` labelled predictions, and no winner
    waiting        some variant has fewer: labels arrive over hours or days, and the next
                   run may decide

The step writes verdict.json (docs/shadow-and-ab.md documents its fields) into
`<run dir>/verdict/<endpoint>/` (MLC_VERDICT_FILE names another path), the decision alone
into `$MLC_RUN_DIR/verdict-decision` (the Argo step's output parameter `decision`, and what
`mlc run` shows), pushes the VERDICT_* gauges of mlc/metrics.py to MLC_PUSHGATEWAY_URL (or
writes them beside the JSON). It exits 0 on every decision, `waiting` included: a run that
found too few labels did its job, and a failed workflow per schedule until the labels
arrive would be noise that hides real failures. It exits 1 when it could not run
(unreadable log or labels, missing columns); that run pushes `mlc_ab_verdict_up 0`, records
the decision `failed` and leaves the last figures in place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlc import metrics as contract
from mlc import step_contract as sc
from mlc.compiler import ir
from mlc.runtime import pushgateway
from mlc.runtime.prediction_log import (
    PREDICTION_COLUMN,
    TIMESTAMP_COLUMN,
    VARIANT_COLUMN,
    VERSION_COLUMN,
    read_log,
    resolve_uri,
)
from mlc.runtime.step import EXIT_FAILED, StepContext, StepFailed

from . import stats
from .join import LABEL_COLUMN, JoinCounts, JoinError, labelled_predictions

VERDICT_FILE_ENV = "MLC_VERDICT_FILE"
VERDICT_URI_ENV = "MLC_VERDICT_URI"  # replaces the IR's output_uri (local runs, tests)
PUSH_JOB = "mlc-ab-verdict"
KIND = "ABVerdict"  # the JSON's `kind`; `mlc promote --from-verdict` checks it
VERSION = 1
DECISIONS = ("winner", "no-difference", "waiting")
FAILED = "failed"  # the recorded decision of a run that could not decide anything


def run(ctx: StepContext) -> None:
    name = ctx.pipeline.endpoint
    endpoint = ctx.project.endpoints.get(name or "")
    if endpoint is None or endpoint.rollout.verdict is None:
        raise StepFailed(f"pipeline `{ctx.pipeline.name}` names no A/B endpoint with a verdict")
    verdict = endpoint.rollout.verdict
    folder = ctx.run_dir / "verdict" / endpoint.k8s_name
    target = Path(os.environ.get(VERDICT_FILE_ENV) or folder / "verdict.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    decision_file = ctx.run_dir / sc.VERDICT_DECISION_FILE
    exporter = Exporter(endpoint.name, verdict.metric, target.parent)
    started = time.time()
    try:
        window = int(ctx.param("window_seconds") or verdict.window_seconds)
        if window <= 0:
            raise StepFailed(f"window_seconds must be positive, got {window}")
        log_uri = resolve_uri(endpoint.prediction_log_uri)
        log = read_log(log_uri, since=started - window, until=started)
        if len(log) == 0:  # nothing logged yet (a new test, a low sample rate): no data
            log = pd.DataFrame(columns=[verdict.key, PREDICTION_COLUMN, VARIANT_COLUMN,
                                        VERSION_COLUMN, TIMESTAMP_COLUMN])
        labels = read_labels(ctx, verdict.labels_source, started - window)
        joined, counts = labelled_predictions(
            log, labels, key=verdict.key, label_column=verdict.label_column,
            timestamp=ctx.project.sources[verdict.labels_source].timestamp_field,
            variants=True, within_seconds=verdict.within_seconds)
        result = decide(ctx.project, endpoint, joined, counts)
    except (StepFailed, JoinError, stats.MetricError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, StepFailed) else str(exc)
        try:
            exporter.failed(started)
        except Exception as push_error:  # keep the first error; report the second
            message += f" (and the failure could not be exported: {push_error})"
        decision_file.write_text(FAILED + "\n", "utf-8")
        write_json(target, {"kind": KIND, "version": VERSION, "project": ctx.project.name,
                            "environment": ctx.project.env, "endpoint": endpoint.name,
                            "status": "failed", "error": message, "started": started})
        raise StepFailed(f"A/B verdict of `{endpoint.name}` failed: {message}",
                         EXIT_FAILED) from exc
    result.update(started=started, run_id=ctx.run_id, predictions_from=log_uri,
                  window={"seconds": window, "start": _iso(started - window),
                          "end": _iso(started)})
    exporter.succeeded(result, started)
    write_json(target, result)
    published = publish(os.environ.get(VERDICT_URI_ENV) or verdict.output_uri, target)
    decision_file.write_text(result["decision"] + "\n", "utf-8")
    print(describe(result, target) + f"\npublished: {published}")


def read_labels(ctx: StepContext, source_name: str, since: float) -> pd.DataFrame:
    from mlc.runtime import sources

    source = ctx.project.sources[source_name]
    # the window narrows a warehouse's query (labels come at or after their predictions);
    # a file is read whole, and the join keeps only the logged keys
    table = sources.read(ctx, source, start=dt.datetime.fromtimestamp(since, dt.UTC))
    return table.to_pandas()


# --- the decision ---------------------------------------------------------------------------

def decide(project: ir.ResolvedProject, endpoint: ir.Endpoint, joined: pd.DataFrame,
           counts: JoinCounts) -> dict:
    """The verdict document (without the run's times) for the joined rows."""
    v = endpoint.rollout.verdict
    assert v is not None
    arms = {a.name: a for a in endpoint.rollout.variants if a.weight > 0 or a.name == v.baseline}
    challengers = [n for n in arms if n != v.baseline]
    per_comparison = v.alpha / max(1, len(challengers))
    frames = {n: joined[joined[VARIANT_COLUMN] == n] for n in arms}
    data = {n: (f[LABEL_COLUMN].to_numpy(dtype=float), f[PREDICTION_COLUMN].to_numpy(dtype=float))
            for n, f in frames.items()}
    short = sorted(n for n, (y, _) in data.items() if len(y) < v.min_samples)
    variants: dict[str, dict] = {}
    for n, (y, p) in data.items():
        entry = {"samples": len(y), "alias": arms[n].alias, "version": arms[n].version,
                 "model_uri": arms[n].model_uri,
                 "model_versions": sorted(frames[n][VERSION_COLUMN].dropna().astype(str)
                                          .unique().tolist())
                 if VERSION_COLUMN in frames[n] else []}
        if len(y) >= 2:
            e = stats.estimate(v.metric, y, p, v.alpha)
            entry.update(value=e.value, ci=[e.ci_low, e.ci_high])
        else:
            entry.update(value=None, ci=None)
        variants[n] = entry
    comparisons: dict[str, dict] = {}
    if not short:
        y0, p0 = data[v.baseline]
        for n in challengers:
            c = stats.compare(v.metric, *data[n], y0, p0, per_comparison)
            better = c.difference > 0 if v.higher_is_better else c.difference < 0
            comparisons[n] = {"against": v.baseline, "difference": c.difference,
                              "difference_ci": [c.ci_low, c.ci_high], "statistic": c.statistic,
                              "p_value": c.p_value,
                              "significant": bool(c.p_value < per_comparison),
                              "better": bool(better)}
    winner = None
    if short:
        decision = "waiting"
    else:
        wins = [n for n, c in comparisons.items() if c["significant"] and c["better"]]
        losses = [n for n, c in comparisons.items() if c["significant"] and not c["better"]]
        if wins:
            sign = 1 if v.higher_is_better else -1
            winner = max(wins, key=lambda n: (sign * variants[n]["value"], n))
        elif challengers and len(losses) == len(challengers):
            winner = v.baseline
        decision = "winner" if winner else "no-difference"
    return {
        "kind": KIND, "version": VERSION, "status": "ok",
        "project": project.name, "environment": project.env, "endpoint": endpoint.name,
        "decision": decision, "winner": winner,
        "winner_model": _winner_model(variants[winner]) if winner else None,
        "metric": v.metric, "higher_is_better": v.higher_is_better, "test": v.test,
        "alpha": v.alpha, "alpha_per_comparison": per_comparison, "baseline": v.baseline,
        "min_samples": v.min_samples, "short_of_samples": short,
        "join": {"key": v.key, "labels_source": v.labels_source,
                 "label_column": v.label_column, "within_seconds": v.within_seconds,
                 "label_time_column": v.label_time_column, **counts.as_dict()},
        "variants": variants, "comparisons": comparisons,
    }


def _winner_model(entry: dict) -> dict:
    """What `mlc promote --from-verdict` pins: the one registry version the winner served
    (None when it served several in the window, or the log did not say)."""
    versions = entry["model_versions"]
    served = int(versions[0]) if len(versions) == 1 and versions[0].isdigit() else None
    return {"version": served, "alias": entry["alias"], "model_uri": entry["model_uri"],
            "model_versions": versions}


# --- output -----------------------------------------------------------------------------------

class Exporter:
    """The VERDICT_* gauges of one endpoint, pushed or written as a textfile."""

    def __init__(self, endpoint: str, metric: str, folder: Path):
        self.endpoint = endpoint
        self.metric = metric
        self.folder = folder

    def succeeded(self, result: dict, started: float) -> None:
        values: list[pushgateway.Value] = []
        m = {"metric": self.metric}
        for name, entry in sorted(result["variants"].items()):
            values.append((contract.VERDICT_SAMPLES, entry["samples"], {"variant": name}))
            values.append((contract.VERDICT_WINNER, int(result["winner"] == name),
                           {"variant": name}))
            if entry["value"] is not None:
                values += [(contract.VERDICT_VALUE, entry["value"], {"variant": name, **m}),
                           (contract.VERDICT_CI_LOWER, entry["ci"][0], {"variant": name, **m}),
                           (contract.VERDICT_CI_UPPER, entry["ci"][1], {"variant": name, **m})]
        for name, c in sorted(result["comparisons"].items()):
            values.append((contract.VERDICT_P_VALUE, c["p_value"], {"variant": name, **m}))
        values += [(contract.VERDICT_STATE, int(result["decision"] == d), {"decision": d})
                   for d in DECISIONS]
        values += [(contract.VERDICT_LAST_RUN, started, {}),
                   (contract.VERDICT_LAST_SUCCESS, time.time(), {}),
                   (contract.VERDICT_UP, 1, {})]
        self._export(values, replace=True)  # replaces the last run's series: none go stale

    def failed(self, started: float) -> None:
        self._export([(contract.VERDICT_LAST_RUN, started, {}), (contract.VERDICT_UP, 0, {})],
                     replace=False)

    def _export(self, values, replace: bool) -> None:
        pushgateway.export(values, job=PUSH_JOB, grouping={"endpoint": self.endpoint},
                           textfile=self.folder / "metrics.prom", replace=replace)


def describe(result: dict, target: Path) -> str:
    head = {"winner": f"winner `{result['winner']}`", "no-difference": "no difference",
            "waiting": "waiting for labels: "
                       f"{', '.join(result['short_of_samples'])} short of minSamples "
                       f"{result['min_samples']}"}[result["decision"]]
    lines = [f"A/B verdict of `{result['endpoint']}` on {result['metric']}: {head}"]
    for name, entry in sorted(result["variants"].items()):
        value = "-" if entry["value"] is None else f"{entry['value']:.6g}"
        c = result["comparisons"].get(name)
        vs = f"  p={c['p_value']:.3g} vs {c['against']}" if c else (
            "  (baseline)" if name == result["baseline"] else "")
        lines.append(f"  {name:20} n={entry['samples']:<8} {result['metric']} {value}{vs}")
    lines.append(f"verdict: {target}")
    return "\n".join(lines)


def write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=_plain,
                              allow_nan=False) + "\n", "utf-8")
    tmp.replace(path)


def publish(uri: str, local: Path) -> str:
    """Copy the verdict to `uri` (a local path or an object store), replacing it whole."""
    from mlc.runtime.prediction_log import filesystem

    fs, path = filesystem(uri)
    folder = path.rsplit("/", 1)[0]
    fs.create_dir(folder, recursive=True)
    tmp = f"{folder}/.{path.rsplit('/', 1)[1]}.tmp"
    with fs.open_output_stream(tmp) as out:
        out.write(local.read_bytes())
    fs.move(tmp, path)
    return uri


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


__all__ = ["DECISIONS", "KIND", "VERDICT_FILE_ENV", "decide", "run"]
