"""The first step of every training pipeline: is the data what ml.yaml says it is?

Checks every source the model reads (the label source, within the training window, and the
sources of its feature views) against its declared columns: presence, type, nulls, min/max,
allowed values, the row count (`checks.minRows`) and the age of the newest timestamp
(`checks.maxStaleness`). All problems are collected, then the step stops the pipeline (exit
10) with one readable report, before any compute is spent on training:

    source transactions (data/transactions.parquet): 20000 rows, 15012 in the window
      amount: 12 rows above max 50000 (e.g. row 4711: 73000.5)

Arrow compute does the counting, so a large file is scanned without a copy into pandas.
Warehouse sources are read with the query that training reads them with (mlc/runtime/sources/).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mlc.compiler import ir
from mlc.runtime import sources, step_summary
from mlc.runtime.step import EXIT_BAD_DATA, StepContext, StepFailed
from mlc.runtime.train.data import window_seconds

REPORT_FILE = "validation.json"


@dataclass(frozen=True)
class Problem:
    source: str
    column: str | None  # None for table-wide checks (rows, freshness)
    check: str  # missing, type, nulls, min, max, allowed, rows, freshness
    rows: int  # how many rows fail (0 for table-wide checks)
    message: str
    example_row: int | None = None  # row number in the source, counting from 0
    example_value: Any = None


@dataclass
class SourceReport:
    source: str
    location: str
    rows: int = 0
    rows_checked: int = 0  # after the training window (label source only)
    checked: bool = True
    note: str = ""
    # Great Expectations' verdict on the same rows (expectations.py); None: no suite ran
    expectations_met: bool | None = None
    expectations: int = 0
    expectations_failed: list[str] = field(default_factory=list)
    expectations_report: str = ""  # GX's page, relative to the run folder


def _is_type(declared: str, actual: pa.DataType) -> bool:
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if declared in ("int32", "int64"):
        return pa.types.is_integer(actual)
    if declared in ("float32", "float64"):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual) \
            or pa.types.is_decimal(actual)
    if declared == "bool":
        return pa.types.is_boolean(actual)
    if declared == "string":
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if declared == "bytes":
        return pa.types.is_binary(actual) or pa.types.is_large_binary(actual)
    if declared == "unix_timestamp":
        return pa.types.is_timestamp(actual)
    return True


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(pc.cast(pc.fill_null(mask, False), pa.int64())).as_py() or 0)


def _first(mask, values, rows: pa.Array) -> tuple[int | None, Any]:
    mask = pc.fill_null(mask, False)
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    hits = pc.indices_nonzero(mask)
    if len(hits) == 0:
        return None, None
    i = hits[0].as_py()
    value = values[i].as_py()
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    elif isinstance(value, bytes):
        value = value[:32].hex()
    return rows[i].as_py(), value


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def in_window(source: ir.Source, table: pa.Table, window: int) -> tuple[pa.Table, pa.Array]:
    """The rows a check looks at, and their row numbers in the source: with a window (the
    label source), rows older than the newest timestamp - window are not used."""
    rows = pa.array(range(table.num_rows), pa.int64())
    ts = source.timestamp_field
    ts_ok = ts in table.column_names and pa.types.is_timestamp(table.schema.field(ts).type)
    if window and ts_ok and table.num_rows:
        newest = pc.max(table[ts])
        start = pa.scalar(newest.as_py() - dt.timedelta(seconds=window), newest.type)
        keep = pc.fill_null(pc.greater_equal(table[ts], start), False).combine_chunks()
        table, rows = table.filter(keep), rows.filter(keep)
    return table, rows


def check_table(source: ir.Source, table: pa.Table, *, window: int = 0,
                now: dt.datetime | None = None) -> tuple[list[Problem], SourceReport]:
    """Every declared check of one source over `table` (all of its rows)."""
    report = SourceReport(source.name, "", rows=table.num_rows)
    problems: list[Problem] = []
    ts = source.timestamp_field
    columns = list(source.columns)
    if ts not in {c.name for c in columns}:
        columns.append(ir.Column(name=ts, type="unix_timestamp", nullable=False, min=None,
                                 max=None, allowed=None))
    present = set(table.column_names)
    ts_ok = ts in present and pa.types.is_timestamp(table.schema.field(ts).type)

    table, rows = in_window(source, table, window)
    report.rows_checked = table.num_rows

    for col in columns:
        name = col.name
        if name not in present:
            problems.append(Problem(source.name, name, "missing", 0,
                                    f"{name}: column is missing (declared in ml.yaml)"))
            continue
        values = table[name]
        if not _is_type(col.type, values.type):
            problems.append(Problem(source.name, name, "type", table.num_rows,
                                    f"{name}: type is {values.type}, ml.yaml declares "
                                    f"{col.type}"))
            continue
        nulls = pc.is_null(values, nan_is_null=True)
        n = _count(nulls)
        if n and (not col.nullable or name == ts):
            row, _ = _first(nulls, values, rows)
            problems.append(Problem(source.name, name, "nulls", n,
                                    f"{name}: {_plural(n, 'null value')} but nullable: false "
                                    f"(e.g. row {row})", row, None))
        numeric = pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
        for check, bound, op, word in (("min", col.min, pc.less, "below"),
                                       ("max", col.max, pc.greater, "above")):
            if bound is None or not numeric:
                continue
            mask = op(values, pa.scalar(bound, pa.float64()))
            if n := _count(mask):
                row, value = _first(mask, values, rows)
                problems.append(Problem(
                    source.name, name, check, n, f"{name}: {_plural(n, 'row')} {word} {check} "
                    f"{_num(bound)} (e.g. row {row}: {value})", row, value))
        if col.allowed is not None:
            allowed = _allowed_array(col.allowed, values.type)
            outside = pc.invert(pc.is_in(values, value_set=allowed))
            mask = pc.and_(outside, pc.is_valid(values))
            if n := _count(mask):
                row, value = _first(mask, values, rows)
                shown = ", ".join(str(a) for a in col.allowed)
                problems.append(Problem(
                    source.name, name, "allowed", n, f"{name}: {_plural(n, 'row')} not in the "
                    f"allowed values [{shown}] (e.g. row {row}: {value!r})", row, value))

    if source.min_rows is not None and table.num_rows < source.min_rows:
        where = " in the training window" if window else ""
        problems.append(Problem(source.name, None, "rows", 0,
                                f"rows: {table.num_rows}{where}, at least {source.min_rows} "
                                "required (checks.minRows)"))
    if source.max_staleness_seconds is not None and ts_ok:
        now = now or dt.datetime.now(dt.UTC)
        newest = pc.max(table[ts]).as_py() if table.num_rows else None
        if newest is not None and newest.tzinfo is None:
            newest = newest.replace(tzinfo=dt.UTC)
        age = (now - newest).total_seconds() if newest else None
        if age is None or age > source.max_staleness_seconds:
            shown = f"{newest.isoformat()}, {_duration(age)} old" if newest else "no rows"
            problems.append(Problem(source.name, None, "freshness", 0,
                                    f"freshness: newest {ts} is {shown}; at most "
                                    f"{_duration(source.max_staleness_seconds)} allowed "
                                    "(checks.maxStaleness)"))
    return problems, report


def _allowed_array(allowed: list, type_: pa.DataType) -> pa.Array:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    try:
        return pa.array(allowed).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return pa.array([str(a) for a in allowed]).cast(type_, safe=False)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "",
             f"{minutes}m" if minutes and not days else ""]
    return " ".join(p for p in parts if p) or f"{seconds}s"


def sources_of(model: ir.Model, project: ir.ResolvedProject) -> list[str]:
    """The label source first, then the feature views' sources, each once; a model trained
    on a dataset: the source its `dataset.table` names, if any."""
    if model.dataset is not None:
        return [model.dataset.source] if model.dataset.source else []
    names = [model.label_source]
    for ref in model.features:
        source = project.feature_views[ref.view].source
        if source not in names:
            names.append(source)
    return names


def validate(ctx: StepContext, model: ir.Model, now: dt.datetime | None = None
             ) -> tuple[list[Problem], list[SourceReport]]:
    now = now or dt.datetime.now(dt.UTC)  # one clock for mlc's checks and GX's
    problems: list[Problem] = []
    reports: list[SourceReport] = []
    for name in sources_of(model, ctx.project):
        source = ctx.project.sources[name]
        try:
            table = sources.read(ctx, source)
        except StepFailed as exc:  # no data is bad data: the same exit code, one report
            problems.append(Problem(name, None, "missing", 0, exc.message))
            reports.append(SourceReport(name, sources.location(ctx, source)))
            continue
        window = window_seconds(ctx) if name == model.label_source else 0
        found, report = check_table(source, table, window=window, now=now)
        report.location = sources.location(ctx, source)
        if source.expectations:
            _run_expectations(ctx, source, table, window, now, report)
        problems += found
        reports.append(report)
    return problems, reports


def _run_expectations(ctx: StepContext, source: ir.Source, table: pa.Table, window: int,
                      now: dt.datetime, report: SourceReport) -> None:
    from mlc.runtime.train import expectations

    rows_checked, rows = in_window(source, table, window)
    outcome = expectations.run_suite(ctx.project, source, rows_checked, rows,
                                     ctx.run_dir / expectations.REPORT_DIR, now)
    report.expectations_met = outcome.success
    report.expectations = outcome.evaluated
    report.expectations_failed = outcome.failed
    report.expectations_report = str(outcome.report_file.relative_to(ctx.run_dir))


def failed_expectations(reports: list[SourceReport]) -> int:
    return sum(len(r.expectations_failed) for r in reports)


def render(problems: list[Problem], reports: list[SourceReport]) -> str:
    lines = []
    for report in reports:
        if not report.checked:
            lines.append(f"source {report.source}: not checked ({report.note})")
            continue
        found = [p for p in problems if p.source == report.source]
        if any(p.check == "missing" and p.column is None for p in found):
            lines.append(f"source {report.source}: cannot be read")
            lines += [f"  {p.message}" for p in found]
            continue
        counted = f"{_plural(report.rows, 'row')}"
        if report.rows_checked != report.rows:
            counted += f", {report.rows_checked} in the training window"
        status = _plural(len(found), "problem") if found else "ok"
        lines.append(f"source {report.source} ({report.location}): {counted}: {status}")
        lines += [f"  {p.message}" for p in found]
        if report.expectations_met is not None:
            lines.append("  " + _expectations_line(report))
    return "\n".join(lines)


def _expectations_line(report: SourceReport) -> str:
    where = f"(GX report: {report.expectations_report})"
    if report.expectations_met:
        return f"great expectations: {_plural(report.expectations, 'expectation')} met {where}"
    failed = report.expectations_failed
    return (f"great expectations: {len(failed)} of {_plural(report.expectations, 'expectation')}"
            f" failed {where}: {', '.join(failed)}")


def run(ctx: StepContext) -> None:
    model = ctx.model
    problems, reports = validate(ctx, model)
    text = render(problems, reports)
    gx_failed = failed_expectations(reports)
    result = {"ok": not problems and not gx_failed, "problems": [asdict(p) for p in problems],
              "sources": [asdict(r) for r in reports]}
    (ctx.run_dir / REPORT_FILE).write_text(json.dumps(result, indent=2, default=str) + "\n",
                                           "utf-8")
    step_summary.write(ctx, [
        {"kind": "rows", "source": r.source, "read": r.rows, "used": r.rows_checked,
         "failing": sum(p.rows for p in problems if p.source == r.source),
         "problems": [p.message for p in problems if p.source == r.source],
         "expectations_failed": list(r.expectations_failed),
         "expectations_report": r.expectations_report}
        for r in reports if r.checked])
    if problems or gx_failed:
        found = _plural(len(problems), "problem") if problems else \
            f"{_plural(gx_failed, 'failed expectation')}"
        raise StepFailed(f"data validation found {found}; nothing was trained\n{text}",
                         EXIT_BAD_DATA)
    print(text)
