"""ml.yaml's data checks as a Great Expectations suite, run by real GX.

The suite each source compiles to is GX's own format (GX parses the checked-in file), and the
validate step runs it with GX beside mlc's own checks: on broken data both name the same
columns and checks, GX's result and page land in the run folder, and the step's container
command, run as a process the way a cluster runs it (tests/cluster_pods.py), writes them too.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlc.compiler.backends import expectations as backend
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.compiler.resolve.data_checks import expectation_suite
from mlc.runtime.step import EXIT_BAD_DATA, StepFailed, build_context
from mlc.runtime.train import validation

from .cluster_pods import Cluster, Failed, Image, mlc_compile, read_tree
from .conftest import ROOT

gx = pytest.importorskip("great_expectations")

PIPELINE = "train-fraud-classifier"
TRAIN_IMAGE = "ghcr.io/mlc-dev/mlc-train:0.1.0"


@pytest.fixture(scope="module")
def project():
    resolved = check_environment(ROOT, "dev", Diagnostics())
    assert resolved is not None
    return resolved


def with_checks(project, **checks):
    """The project with more table-wide checks on some sources (`name={"min_rows": 5}`),
    their suites rebuilt as resolve builds them."""
    sources = dict(project.sources)
    for name, update in checks.items():
        source = sources[name].model_copy(update=update)
        sources[name] = source.model_copy(update={"expectations": expectation_suite(source)})
    return project.model_copy(update={"sources": sources})


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "data", tmp_path / "data",
                    ignore=shutil.ignore_patterns("*.py", "*.db", "__pycache__"))
    return tmp_path


def context(project, data_root: Path, run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)
    return build_context(project, PIPELINE, "validate-data",
                         environ={"MLC_DATA_ROOT": str(data_root), "MLC_RUN_DIR": str(run_dir)})


def set_values(path: Path, column: str, rows: dict[int, object]) -> None:
    table = pq.read_table(path)
    values = table[column].to_pylist()
    for i, value in rows.items():
        values[i] = value
    index = table.column_names.index(column)
    pq.write_table(table.set_column(index, column, pa.array(values, table[column].type)), path)


def gx_failures(run_dir: Path, source: str) -> set[tuple[str | None, str]]:
    result = json.loads((run_dir / "validation" / f"{source}.json").read_text())
    return {(r["expectation_config"]["meta"].get("column"),
             r["expectation_config"]["meta"]["check"])
            for r in result["results"] if not r["success"]}


def test_each_source_compiles_to_a_suite_gx_reads(project):
    project = with_checks(project, transactions={"max_staleness_seconds": 86_400})
    files = {f.path: f for f in backend.emit(project)}
    assert sorted(files) == ["expectations/customer_daily.json",
                             "expectations/merchant_daily.json", "expectations/transactions.json"]
    document = files["expectations/transactions.json"].content
    suite = gx.ExpectationSuite(**{k: document[k] for k in ("name", "expectations", "meta")})
    assert suite.name == "fraud-detection.transactions"
    by_check = {(e.meta["column"] if "column" in e.meta else None, e.meta["check"]):
                e.configuration.kwargs for e in suite.expectations}
    assert by_check[("amount", "max")] == {"column": "amount", "max_value": 50000}
    assert by_check[("amount", "min")] == {"column": "amount", "min_value": 0}
    assert by_check[("is_fraud", "allowed")]["value_set"] == [0, 1]
    assert by_check[(None, "rows")] == {"min_value": 1000}
    # freshness depends on when the step runs: a parameter, filled in by the step
    assert by_check[("event_timestamp", "freshness")]["min_value"] == \
        {"$PARAMETER": "newest_timestamp_at_least"}
    assert len(suite.expectations) == len(project.sources["transactions"].expectations)


def test_good_data_meets_the_suite_and_gx_writes_its_report(project, data_root, tmp_path):
    ctx = context(project, data_root, tmp_path / "run")
    problems, reports = validation.validate(ctx, ctx.model)
    assert problems == []
    assert all(r.expectations_met for r in reports), [r.expectations_failed for r in reports]
    result = json.loads((ctx.run_dir / "validation" / "transactions.json").read_text())
    assert result["success"] is True
    assert result["statistics"]["evaluated_expectations"] == reports[0].expectations
    assert result["suite_name"] == "fraud-detection.transactions"
    page = (ctx.run_dir / "validation" / "transactions.html").read_text()
    assert "<html" in page and "expect_column_values_to_be_between" not in page \
        and "amount" in page  # GX's rendered prose, not the raw names


def test_broken_data_fails_gx_on_the_checks_mlc_names(project, data_root, tmp_path):
    path = data_root / "data" / "transactions.parquet"
    rows = pq.read_metadata(path).num_rows
    set_values(path, "amount", {rows - 2: 123_456.0, rows - 3: -5.0})
    set_values(path, "is_fraud", {rows - 4: 7})
    set_values(path, "customer_id", {rows - 5: None})
    ctx = context(project, data_root, tmp_path / "run")
    problems, reports = validation.validate(ctx, ctx.model)
    mine = {(p.column, p.check) for p in problems if p.source == "transactions"}
    assert mine == {("amount", "max"), ("amount", "min"), ("is_fraud", "allowed"),
                    ("customer_id", "nulls")}
    assert gx_failures(ctx.run_dir, "transactions") == mine
    result = json.loads((ctx.run_dir / "validation" / "transactions.json").read_text())
    (over,) = [r for r in result["results"] if r["expectation_config"]["meta"]["check"] == "max"]
    # GX names the source's own row number and value, as mlc's message does
    assert over["result"]["partial_unexpected_index_list"] == \
        [{"row": rows - 2, "amount": 123_456.0}]
    assert over["result"]["partial_unexpected_list"] == [123_456.0]
    assert f"amount: 1 row above max 50000 (e.g. row {rows - 2}: 123456.0)" in \
        validation.render(problems, reports)


def test_rows_freshness_and_a_missing_column_fail_gx(project, data_root, tmp_path):
    project = with_checks(project, transactions={"max_staleness_seconds": 30 * 86_400},
                          merchant_daily={"min_rows": 100})
    path = data_root / "data" / "merchant_daily.parquet"
    table = pq.read_table(path)
    dropped = "txn_count_30d"
    pq.write_table(table.drop_columns([dropped]).slice(0, 10), path)
    newest = max(pq.read_table(data_root / "data" / "transactions.parquet")
                 ["event_timestamp"].to_pylist())
    ctx = context(project, data_root, tmp_path / "run")
    problems, _ = validation.validate(ctx, ctx.model, now=newest + dt.timedelta(days=400))
    assert {(p.source, p.column, p.check) for p in problems} == {
        ("transactions", None, "freshness"), ("merchant_daily", None, "rows"),
        ("merchant_daily", dropped, "missing")}
    assert gx_failures(ctx.run_dir, "transactions") == {("event_timestamp", "freshness")}
    failed = gx_failures(ctx.run_dir, "merchant_daily")
    assert {(None, "rows"), (dropped, "missing")} <= failed
    # a day after the newest row, the same data is fresh for both
    ctx = context(project, data_root, tmp_path / "run-2")
    problems, _ = validation.validate(ctx, ctx.model, now=newest + dt.timedelta(days=1))
    assert "freshness" not in {p.check for p in problems}
    assert gx_failures(ctx.run_dir, "transactions") == set()


def test_the_step_fails_on_gx_alone_with_exit_10(project, data_root, tmp_path, monkeypatch):
    """A suite failure that mlc's own checks do not see still stops the pipeline."""
    source = project.sources["transactions"]
    stricter = [e.model_copy(update={"kwargs": {**e.kwargs, "max_value": 1}})
                if e.meta.get("check") == "max" and e.meta.get("column") == "amount" else e
                for e in source.expectations]
    sources = {**project.sources,
               "transactions": source.model_copy(update={"expectations": stricter})}
    ctx = context(project.model_copy(update={"sources": sources}), data_root, tmp_path / "run")
    with pytest.raises(StepFailed) as failed:
        validation.run(ctx)
    assert failed.value.exit_code == EXIT_BAD_DATA
    assert "failed expectation" in failed.value.message
    assert "expect_column_values_to_be_between(amount, max)" in failed.value.message
    report = json.loads((ctx.run_dir / validation.REPORT_FILE).read_text())
    assert report["ok"] is False


@pytest.mark.slow
def test_the_compiled_validate_step_runs_gx_as_a_pod(tmp_path):
    out = mlc_compile(ROOT, "dev", tmp_path / "deploy")
    tree = read_tree(out)
    suite = json.loads((out / "expectations" / "transactions.json").read_text())
    workdir = tmp_path / "image-mlc"
    workdir.mkdir()
    workdir.chmod(0o555)

    def submit(name: str, break_data: bool) -> Path:
        cluster = Cluster(tree, tmp_path / name, images={TRAIN_IMAGE: Image(workdir)},
                          namespace="fraud-dev")
        run_dir = cluster.claim(f"{name}-run")
        shutil.copytree(ROOT / "data", run_dir / "data",
                        ignore=shutil.ignore_patterns("*.py", "*.db", "__pycache__"))
        if break_data:
            path = run_dir / "data" / "transactions.parquet"
            set_values(path, "amount", {pq.read_metadata(path).num_rows - 2: 123_456.0})
        cluster.submit(PIPELINE, name, {}, until="validate-data")
        return run_dir

    good = submit("wf-good", break_data=False)
    result = json.loads((good / "validation" / "transactions.json").read_text())
    assert result["success"] is True
    assert [r["expectation_config"]["type"] for r in result["results"]] == \
        [e["type"] for e in suite["expectations"]]  # the checked-in suite is what ran
    assert (good / "validation" / "transactions.html").is_file()
    with pytest.raises(Failed) as failed:
        submit("wf-bad", break_data=True)
    assert "exited with 10" in str(failed.value)
    assert "expect_column_values_to_be_between(amount, max)" in str(failed.value)
    bad = tmp_path / "wf-bad" / "claims" / "wf-bad-run"
    assert gx_failures(bad, "transactions") == {("amount", "max")}
