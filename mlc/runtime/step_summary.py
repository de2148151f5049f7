"""A step's summary: the few facts a person wants when the step ends, as data.

Each step that has something to report writes `$MLC_RUN_DIR/summary/<step>.json`
(mlc/step_contract.py, SUMMARY_DIR): `{"step": ..., "facts": [...]}`, every fact a small
mapping with a `kind`. `mlc run` shows them under the step's line (mlc/local/summaries.py);
in a cluster they stay in the run folder beside the step's other records. Reading facts from
a file rather than from the log keeps the display independent of what libraries print.

    gate        metric, value, min, max, passed; `slice` ("column = value") for a slice gate
    comparison  metric, candidate, champion, max_regression, passed (against the champion)
    rows        source, read, used (in the training window), failing (rows failing a check),
                problems (what each failed check says)
    dataset     label_rows, dropped (lost by the feature join), without_features, train_rows,
                test_rows, max_dropped_share (`training.maxDroppedRows`, or null)
    registered  model, version, alias
    promoted    model, version, alias, promoted, holder (the version that holds the alias)
    drift       check, drifted, columns, share, threshold, report (the HTML report's path),
                top: [{column, method, score, threshold}] (the drifted features, the furthest
                past their threshold first)
    vectors     view (or endpoint), collection, upserted (rows written this run), stored (the
                collection's rows after it), created (the collection was made by this run)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlc import step_contract as sc
from mlc.runtime.step import StepContext, write_record

TOP_FEATURES = 5


def write(ctx: StepContext, facts: Sequence[Mapping[str, Any]]) -> None:
    folder = ctx.run_dir / sc.SUMMARY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_record(folder / f"{ctx.step.name}.json",
                 {"step": ctx.step.name, "facts": [dict(f) for f in facts]})


def gate(result: Mapping[str, Any], slice_name: str | None = None) -> dict[str, Any]:
    fact = {"kind": "gate", "metric": result["metric"], "value": _number(result["value"]),
            "min": result["min"], "max": result["max"], "passed": bool(result["passed"])}
    if slice_name is not None:
        fact["slice"] = slice_name
    return fact


def drift(check: str, columns: Sequence[Any], drifted: int, share: float, threshold: float,
          past: Callable[[Any], float], report: str) -> dict[str, Any]:
    """`columns`: the per-feature results (column, method, score, threshold, drifted);
    `past(c)`: how far a drifted one is past its threshold, comparable across methods."""
    found = sorted((c for c in columns if c.drifted), key=lambda c: (-past(c), c.column))
    return {"kind": "drift", "check": check, "drifted": drifted, "columns": len(columns),
            "share": share, "threshold": threshold, "report": report,
            "top": [{"column": c.column, "method": c.method, "score": _number(c.score),
                     "threshold": c.threshold} for c in found[:TOP_FEATURES]]}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
