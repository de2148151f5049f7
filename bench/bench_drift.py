"""Drift speed: mlc's drift statistics vs Evidently's DataDriftPreset, same data, one run.

    python bench/bench_drift.py [--rows 100000,1000000] [--columns 25]

For each row count it builds a reference and a current frame (20 float columns, a third of
them shifted, and 5 low-cardinality integer columns, one shifted, i.e. Evidently's
numerical and categorical kinds), then times

  evidently  Report([DataDriftPreset()]).run(current, reference)  (its default test choice)
  mlc        mlc.runtime.drift.stats.dataset_drift(reference, current, columns)

and checks that both chose the same test per column, that every score agrees to 1e-9, and
that the drifted columns and the dataset decision are the same. It prints the times, the
speed-up and the largest score difference, and finally times the human report
(mlc.runtime.drift.report) rendered from its bounded sample. At 1M rows the preset takes
minutes: pass `--rows 100000` for a quick run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlc.runtime.drift import stats  # noqa: E402


def make_frames(rows: int, columns: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_cat = max(1, columns // 5)
    n_num = columns - n_cat

    def frame(shifted: bool) -> pd.DataFrame:
        data = {}
        for i in range(n_num):
            shift = 0.3 if shifted and i % 3 == 0 else 0.0
            data[f"num_{i:02d}"] = rng.normal(shift, 1.0 + i / 10, rows)
        for i in range(n_cat):
            p = np.array([0.4, 0.3, 0.2, 0.1])
            if shifted and i == 0:
                p = p[::-1]
            data[f"cat_{i:02d}"] = rng.choice(4, size=rows, p=p)
        return pd.DataFrame(data)

    return frame(False), frame(True)


def evidently_result(reference: pd.DataFrame, current: pd.DataFrame):
    from evidently import Report
    from evidently.presets import DataDriftPreset

    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current, reference)
    seconds = time.perf_counter() - start
    scores, count = {}, None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            scores[config["column"]] = (config["method"], config["threshold"], metric["value"])
        else:
            count = metric["value"]
    return seconds, scores, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000",
                        help="comma-separated row counts (each side)")
    parser.add_argument("--columns", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=3, help="mlc runs per size (best kept)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = []
    print(f"{'rows':>9} {'evidently s':>12} {'mlc s':>8} {'speed-up':>9} {'max |d score|':>14} "
          f"{'same decisions':>15}", flush=True)
    for rows in [int(r) for r in args.rows.split(",")]:
        reference, current = make_frames(rows, args.columns)
        columns = list(reference.columns)
        best, ours = float("inf"), None
        for _ in range(args.repeat):
            start = time.perf_counter()
            ours = stats.dataset_drift(reference, current, columns)
            best = min(best, time.perf_counter() - start)
        seconds, theirs, count = evidently_result(reference, current)
        diff = max(abs(c.score - theirs[c.column][2]) for c in ours.columns)
        same_tests = all(theirs[c.column][0] == stats.METHODS[c.method].display
                         for c in ours.columns)
        same = (same_tests and ours.drifted_count == count["count"]
                and abs(ours.share - count["share"]) < 1e-12)
        print(f"{rows:>9} {seconds:>12.2f} {best:>8.3f} {seconds / best:>8.0f}x {diff:>14.1e} "
              f"{str(same):>15}", flush=True)
        results.append({"rows": rows, "columns": args.columns, "evidently_seconds": seconds,
                        "mlc_seconds": best, "speedup": seconds / best,
                        "max_score_difference": diff, "same_decisions": same,
                        "drifted": ours.drifted_count,
                        "methods": sorted({c.method for c in ours.columns})})
    # the report for people, rendered from a bounded sample of the last size
    from mlc.runtime.drift.report import DEFAULT_REPORT_ROWS, write_report

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_report(reference, current, ours, Path(folder))
        report_seconds = time.perf_counter() - start
    print(f"report (HTML + JSON) from a {DEFAULT_REPORT_ROWS}-row sample of {rows} rows: "
          f"{report_seconds:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"sizes": results, "report_seconds": report_seconds},
                                        indent=2) + "\n")
    return 0 if all(r["same_decisions"] and r["max_score_difference"] <= 1e-9
                    for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
