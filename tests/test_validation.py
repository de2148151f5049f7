"""The data validation step: every check ml.yaml declares, on real Arrow tables.

Each test breaks the bundled example's data in one way and expects the report to name the
column, count the rows and show an example; the pipeline stops with exit code 10.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime.step import EXIT_BAD_DATA, StepFailed, build_context
from mlc.runtime.train import validation

from .conftest import ROOT

PIPELINE = "train-fraud-classifier"


@pytest.fixture(scope="module")
def project():
    resolved = check_environment(ROOT, "dev", Diagnostics())
    assert resolved is not None
    return resolved


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "data", tmp_path / "data",
                    ignore=shutil.ignore_patterns("*.py", "*.db", "__pycache__"))
    return tmp_path


def context(project, data_root: Path, run_dir: Path, **params):
    environ = {"MLC_DATA_ROOT": str(data_root), "MLC_RUN_DIR": str(run_dir)}
    environ.update({f"MLC_PARAM_{k.upper()}": v for k, v in params.items()})
    return build_context(project, PIPELINE, "validate-data", environ=environ)


def transactions(data_root: Path) -> pa.Table:
    return pq.read_table(data_root / "data" / "transactions.parquet")


def set_values(table: pa.Table, column: str, rows: dict[int, object],
               type_: pa.DataType | None = None) -> pa.Table:
    values = table[column].to_pylist()
    for i, value in rows.items():
        values[i] = value
    index = table.column_names.index(column)
    return table.set_column(index, column, pa.array(values, type_ or table[column].type))


def test_the_bundled_data_passes(project, data_root, tmp_path):
    ctx = context(project, data_root, tmp_path / "run")
    ctx.run_dir.mkdir(parents=True)
    validation.run(ctx)
    report = json.loads((ctx.run_dir / validation.REPORT_FILE).read_text())
    assert report["ok"] is True
    assert [s["source"] for s in report["sources"]] == \
        ["transactions", "customer_daily", "merchant_daily"]
    window = report["sources"][0]
    assert 0 < window["rows_checked"] < window["rows"]  # 90 days of 120


def test_each_broken_check_is_reported_with_count_and_example(project):
    source = project.sources["transactions"]
    table = pq.read_table(ROOT / "data" / "transactions.parquet")
    table = set_values(table, "amount", {5: 99_999.0, 9: 75_000.0, 7: -1.0})
    table = set_values(table, "is_fraud", {11: 3})
    table = set_values(table, "merchant_id", {13: None, 14: None})
    problems, report = validation.check_table(source, table)
    by_check = {(p.column, p.check): p for p in problems}
    assert set(by_check) == {("amount", "max"), ("amount", "min"), ("is_fraud", "allowed"),
                             ("merchant_id", "nulls")}
    high = by_check[("amount", "max")]
    assert (high.rows, high.example_row, high.example_value) == (2, 5, 99_999.0)
    assert high.message == "amount: 2 rows above max 50000 (e.g. row 5: 99999.0)"
    assert by_check[("amount", "min")].message == \
        "amount: 1 row below min 0 (e.g. row 7: -1.0)"
    assert by_check[("is_fraud", "allowed")].message == \
        "is_fraud: 1 row not in the allowed values [0, 1] (e.g. row 11: 3)"
    nulls = by_check[("merchant_id", "nulls")]
    assert (nulls.rows, nulls.example_row) == (2, 13)
    assert "nullable: false" in nulls.message
    assert report.rows == report.rows_checked == table.num_rows


def test_types_missing_columns_and_nan_as_null(project):
    source = project.sources["customer_daily"]
    table = pq.read_table(ROOT / "data" / "customer_daily.parquet")
    table = table.set_column(table.column_names.index("txn_count_7d"), "txn_count_7d",
                             pc.cast(table["txn_count_7d"], pa.string()))
    table = table.drop_columns(["account_age_days"])
    problems, _ = validation.check_table(source, table)
    messages = sorted(p.message for p in problems)
    assert messages == ["account_age_days: column is missing (declared in ml.yaml)",
                        "txn_count_7d: type is string, ml.yaml declares int64"]

    merchants = project.sources["merchant_daily"]
    table = pq.read_table(ROOT / "data" / "merchant_daily.parquet")
    required = merchants.model_copy(update={"columns": [
        c.model_copy(update={"nullable": False}) if c.name == "chargeback_rate_30d" else c
        for c in merchants.columns]})
    table = set_values(table, "chargeback_rate_30d", {3: float("nan")})
    problems, _ = validation.check_table(required, table)
    assert [(p.column, p.check, p.rows, p.example_row) for p in problems] == \
        [("chargeback_rate_30d", "nulls", 1, 3)]


def test_row_count_within_the_window_and_freshness(project):
    source = project.sources["transactions"]
    table = pq.read_table(ROOT / "data" / "transactions.parquet")
    newest = pc.max(table["event_timestamp"]).as_py()
    # a one-day window leaves far fewer rows than checks.minRows (1000)
    problems, report = validation.check_table(source, table, window=86_400)
    assert report.rows_checked < 1000
    assert [p.check for p in problems] == ["rows"]
    assert problems[0].message.startswith(f"rows: {report.rows_checked} in the training "
                                          "window, at least 1000 required")

    stale = source.model_copy(update={"max_staleness_seconds": 2 * 86_400})
    problems, _ = validation.check_table(stale, table, now=newest + dt.timedelta(days=1))
    assert problems == []
    problems, _ = validation.check_table(stale, table, now=newest + dt.timedelta(days=3,
                                                                                 hours=4))
    assert [p.check for p in problems] == ["freshness"]
    assert "3d 4h old; at most 2d allowed" in problems[0].message


def test_a_window_hides_bad_rows_outside_it(project):
    source = project.sources["transactions"]
    table = pq.read_table(ROOT / "data" / "transactions.parquet")
    table = set_values(table, "amount", {0: 99_999.0})  # the oldest transaction
    assert [p.check for p in validation.check_table(source, table)[0]] == ["max"]
    problems, _ = validation.check_table(source, table, window=90 * 86_400)
    assert problems == []


def test_the_step_stops_the_pipeline_with_exit_10_and_a_readable_report(project, data_root,
                                                                       tmp_path):
    table = transactions(data_root)
    row = table.num_rows - 3  # recent: inside the 90-day training window
    table = set_values(table, "amount", {row: 123_456.0})
    pq.write_table(table, data_root / "data" / "transactions.parquet")
    (data_root / "data" / "merchant_daily.parquet").unlink()
    ctx = context(project, data_root, tmp_path / "run")
    ctx.run_dir.mkdir(parents=True)
    with pytest.raises(StepFailed) as failed:
        validation.run(ctx)
    assert failed.value.exit_code == EXIT_BAD_DATA
    text = failed.value.message
    assert text.startswith("data validation found 2 problems; nothing was trained")
    assert f"amount: 1 row above max 50000 (e.g. row {row}: 123456.0)" in text
    assert "merchant_daily" in text and "does not exist" in text
    assert "source customer_daily" in text and "ok" in text
    report = json.loads((ctx.run_dir / validation.REPORT_FILE).read_text())
    assert report["ok"] is False
    assert {p["check"] for p in report["problems"]} == {"max", "missing"}
