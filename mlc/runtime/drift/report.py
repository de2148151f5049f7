"""The drift report for people: Evidently's DataDriftPreset, HTML and JSON, from a sample.

The decision and the exported scores come from the full data (stats.py). Evidently renders
the same tests (per column: the method and threshold stats.py used, the column kinds it
inferred) on at most `max_rows` rows of each side, so that a million-row check renders in
seconds; on a sample, a score can differ a little from the full-data one. `drift.json`,
written beside the report, holds the full-data result that the check decided on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .stats import DatasetDrift

REPORT_ROWS_ENV = "MLC_DRIFT_REPORT_ROWS"
DEFAULT_REPORT_ROWS = 10_000


def sample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame
    return frame.sample(n=rows, random_state=seed).sort_index()


def write_report(reference: pd.DataFrame, current: pd.DataFrame, result: DatasetDrift,
                 folder: Path, *, max_rows: int | None = None) -> tuple[Path, Path]:
    """Render report.html and report.json into `folder`; returns their paths."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if max_rows is None:
        max_rows = int(os.environ.get(REPORT_ROWS_ENV, DEFAULT_REPORT_ROWS))
    columns = [c.column for c in result.columns]
    definition = DataDefinition(
        numerical_columns=[c.column for c in result.columns if c.kind == "numerical"],
        categorical_columns=[c.column for c in result.columns if c.kind == "categorical"])
    ref = Dataset.from_pandas(sample(reference[columns], max_rows), data_definition=definition)
    cur = Dataset.from_pandas(sample(current[columns], max_rows), data_definition=definition)
    preset = DataDriftPreset(
        columns=columns, drift_share=result.drift_share,
        per_column_method={c.column: c.method for c in result.columns},
        per_column_threshold={c.column: c.threshold for c in result.columns})
    snapshot = Report([preset]).run(cur, ref)
    folder.mkdir(parents=True, exist_ok=True)
    html, data = folder / "report.html", folder / "report.json"
    snapshot.save_html(str(html))
    snapshot.save_json(str(data))
    return html, data
