"""What `mlc run` shows under a step's line: the facts of its summary file, in words.

The steps write them (mlc/runtime/step_summary.py says which facts there are); this module
only reads and phrases them, so nothing on the screen depends on what a library logs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlc import step_contract as sc


def summary_file(run_dir: Path, step: str) -> Path:
    return run_dir / sc.SUMMARY_DIR / f"{step}.json"


def read(run_dir: Path, step: str) -> list[dict[str, Any]]:
    """The step's facts; none when it wrote no summary (or one that is not readable)."""
    path = summary_file(run_dir, step)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    facts = data.get("facts") if isinstance(data, dict) else None
    return [f for f in facts if isinstance(f, dict)] if isinstance(facts, list) else []


def lines(facts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for fact in facts:
        phrase = _PHRASES.get(str(fact.get("kind")))
        if phrase is not None:
            try:
                out += phrase(fact)
            except (KeyError, TypeError, ValueError):  # a fact of another version: not shown
                continue
    return out


def _value(value: Any) -> str:
    return "missing" if value is None else f"{value:.4g}"


def _verdict(passed: bool) -> str:
    return "pass" if passed else "FAIL"


def _gate(f: dict) -> list[str]:
    bounds = " and ".join(b for b in (f">= {f['min']:g}" if f["min"] is not None else "",
                                      f"<= {f['max']:g}" if f["max"] is not None else "") if b)
    where = f"slice {f['slice']}: " if f.get("slice") else ""
    return [f"gate {where}{f['metric']} {_value(f['value'])} (must be {bounds}): "
            f"{_verdict(f['passed'])}"]


def _comparison(f: dict) -> list[str]:
    if f.get("champion") is None:
        return [f"vs champion: {f.get('note') or 'none'}: {_verdict(f['passed'])}"]
    allowed = f", may regress by {f['max_regression']:g}" if f.get("max_regression") else ""
    return [f"vs champion: {f['metric']} {_value(f['candidate'])} against "
            f"{_value(f['champion'])}{allowed}: {_verdict(f['passed'])}"]


def _rows(f: dict) -> list[str]:
    text = f"source {f['source']}: {f['read']} rows read"
    dropped = f["read"] - f["used"]
    if dropped:
        text += f", {dropped} outside the training window dropped"
    problems = f.get("problems", [])
    if problems:
        text += f", {len(problems)} check{'s' if len(problems) > 1 else ''} failed"
        text += f" ({f['failing']} rows)" if f["failing"] else ""
    else:
        text += ", all checks pass"
    lines = [text] + [f"  {p}" for p in problems]
    failed = f.get("expectations_failed") or []
    if failed:  # Great Expectations ran the suite too and disagrees, or agrees on a failure
        lines.append(f"  great expectations: {len(failed)} failed ({f.get('expectations_report')})"
                     f": {', '.join(failed)}")
    return lines


def _dataset(f: dict) -> list[str]:
    text = f"training set: {f['label_rows']} labelled rows"
    lost = f["dropped"] + f["without_features"]
    if lost:
        text += f", {f['dropped']} dropped by the feature join, {f['without_features']} " \
            "without features"
        if f.get("max_dropped_share") is not None:
            text += f" (at most {f['max_dropped_share']:.0%} may be)"
    return [text + f"; {f['train_rows']} to train on, {f['test_rows']} to test"]


def _registered(f: dict) -> list[str]:
    return [f"registered {f['model']} version {f['version']} as @{f['alias']}"]


def _promoted(f: dict) -> list[str]:
    if f["promoted"]:
        return [f"@{f['alias']} -> {f['model']} version {f['version']}"]
    held = f"version {f['holder']}" if f["holder"] is not None else "no version"
    return [f"@{f['alias']} stays on {held} (version {f['version']} not promoted)"]


def _drift(f: dict) -> list[str]:
    out = [f"{f['drifted']} of {f['columns']} features drifted (share {f['share']:.2f}, "
           f"threshold {f['threshold']:.2f})"]
    out += [f"  {c['column']}: {c['method']} {_value(c['score'])} (threshold "
            f"{c['threshold']:g})" for c in f["top"]]
    if f["drifted"] > len(f["top"]):
        out.append(f"  and {f['drifted'] - len(f['top'])} more")
    if f.get("report"):
        out.append(f"report: {f['report']}")
    return out


def _vectors(f: dict) -> list[str]:
    made = ", created it" if f["created"] else ""
    return [f"{f['upserted']} vectors of {f.get('endpoint') or f['view']} upserted into "
            f"{f['collection']} ({f['stored']} stored{made})"]


_PHRASES = {"gate": _gate, "comparison": _comparison, "rows": _rows, "dataset": _dataset,
            "registered": _registered, "promoted": _promoted, "drift": _drift,
            "vectors": _vectors}
