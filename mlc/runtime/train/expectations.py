"""A source's Great Expectations suite, run by GX over the rows the validate step checked.

The suite comes from project.json (the same one the output tree holds under
expectations/<source>.json); GX validates the rows as a pandas batch and its own result is
kept in the run folder, as JSON and as GX's rendered page:

    validation/<source>.json    GX's ExpectationSuiteValidationResult
    validation/<source>.html    the page GX's Data Docs show for it

The train step logs that folder to its MLflow run. Row numbers are the source's, counting
from 0 (the batch's index), so GX's unexpected index list names the same rows as mlc's
messages.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from mlc import step_contract as sc
from mlc.compiler import ir

REPORT_DIR = sc.VALIDATION_DIR


@dataclass(frozen=True)
class SuiteOutcome:
    source: str
    success: bool
    evaluated: int
    failed: list[str]  # "expect_column_values_to_be_between(amount, max)", one per failure
    result_file: Path
    report_file: Path


def _pandas(table: pa.Table, rows: pa.Array):
    import pandas as pd

    # nullable pandas dtypes: an integer column with a null stays an integer column
    mapping = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(),
               pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
               pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
               pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
               pa.bool_(): pd.BooleanDtype()}
    frame = table.to_pandas(types_mapper=mapping.get)
    for name in frame.columns:  # GX's type check knows zone-less datetimes only
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
    frame.index = pd.Index(rows.to_pylist(), name="row")
    return frame


def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # a pod has no business calling out
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def suite_json(name: str, source: ir.Source) -> dict:
    return {"name": name, "expectations": [{"type": e.type, "kwargs": e.kwargs, "meta": e.meta}
                                           for e in source.expectations], "meta": {}}


def run_suite(project: ir.ResolvedProject, source: ir.Source, table: pa.Table, rows: pa.Array,
              out_dir: Path, now: dt.datetime) -> SuiteOutcome:
    """Validate `table` (the rows the step checked; `rows` their numbers) against the
    source's suite; GX's result and page are written to `out_dir`."""
    import great_expectations as gx
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    context = _context()
    name = f"{project.name}.{source.name}"
    suite = gx.ExpectationSuite(**suite_json(name, source))
    batch = (context.data_sources.add_pandas("mlc").add_dataframe_asset(source.name)
             .add_batch_definition_whole_dataframe("rows-checked")
             .get_batch(batch_parameters={"dataframe": _pandas(table, rows)}))
    parameters = {}
    freshness = [e.kwargs["min_value"]["$PARAMETER"] for e in source.expectations
                 if e.meta.get("check") == "freshness"]
    if freshness and source.max_staleness_seconds is not None:
        import pandas as pd

        oldest = pd.Timestamp(now - dt.timedelta(seconds=source.max_staleness_seconds))
        # the batch's timestamps are UTC without a zone (_pandas), as mlc reads naive ones
        if oldest.tzinfo is not None:
            oldest = oldest.tz_convert("UTC").tz_localize(None)
        parameters[freshness[0]] = oldest
    result = batch.validate(suite, expectation_parameters=parameters,
                            result_format={"result_format": "SUMMARY",
                                           "partial_unexpected_count": 5})
    out_dir.mkdir(parents=True, exist_ok=True)
    result_file = out_dir / f"{source.name}.json"
    report_file = out_dir / f"{source.name}.html"
    result_file.write_text(json.dumps(result.to_json_dict(), indent=2, sort_keys=True,
                                      default=str) + "\n", "utf-8")
    page = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    report_file.write_text(page, "utf-8")
    failed = []
    for r in result.results:
        if not r.success:
            config = r.expectation_config
            column = config.kwargs.get("column")
            what = ", ".join(p for p in (column, config.meta.get("check")) if p)
            failed.append(f"{config.type}({what})")
    return SuiteOutcome(source.name, bool(result.success), len(result.results), failed,
                        result_file, report_file)
