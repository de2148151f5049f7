"""A source's data checks (its columns and `checks:`) as a Great Expectations suite.

Every check of ml.yaml becomes one expectation, in the order the validate step reports its
own findings: the column exists, its type, nulls, `min`, `max`, `allowed`; then the row count
and the freshness of the newest timestamp. `min` and `max` are separate expectations so that
GX's report names the bound that failed, as mlc's messages do.

The suite is data in the IR: the backend writes it to the output tree (one JSON per source)
and the validate step runs the very same suite with GX. Freshness depends on the time the
step runs, so its bound is a suite parameter (`$PARAMETER`) that the step fills in: the
checked-in suite stays free of any clock.
"""

from __future__ import annotations

from .. import ir

# The pandas dtypes that satisfy a declared type, named as GX's type check for pandas reads
# them (numpy dtype names, pandas extension dtype classes). The validate step converts the
# Arrow data so that these hold: integers and booleans to pandas' nullable dtypes (a null keeps
# the column's type), timestamps to UTC without a zone.
_INTS = ["Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype", "UInt8Dtype", "UInt16Dtype",
         "UInt32Dtype", "UInt64Dtype", "int8", "int16", "int32", "int64", "uint8", "uint16",
         "uint32", "uint64"]
_FLOATS = ["float16", "float32", "float64", "Float32Dtype", "Float64Dtype", *_INTS]
PANDAS_TYPES: dict[str, list[str]] = {
    "int32": _INTS,
    "int64": _INTS,
    "float32": _FLOATS,
    "float64": _FLOATS,
    "bool": ["bool", "BooleanDtype"],
    "string": ["str", "StringDtype"],  # an object column: GX checks each value's type
    "bytes": ["bytes"],
    "unix_timestamp": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"],
}
# The suite parameter the validate step sets to "now - maxStaleness" before it runs GX.
FRESHNESS_PARAMETER = "newest_timestamp_at_least"


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _expectation(type_: str, check: str, column: str | None = None, **kwargs) -> ir.Expectation:
    meta = {"check": check}
    if column is not None:
        kwargs = {"column": column, **kwargs}
        meta["column"] = column
    return ir.Expectation(type=type_, kwargs=kwargs, meta=meta)


def expectation_suite(source: ir.Source) -> list[ir.Expectation]:
    """The expectations of one batch source; none for a source without checks."""
    columns = list(source.columns)
    if not columns and source.min_rows is None and source.max_staleness_seconds is None:
        return []
    ts = source.timestamp_field
    if ts not in {c.name for c in columns}:  # the event time is always checked, as mlc does
        columns.append(ir.Column(name=ts, type="unix_timestamp", nullable=False, min=None,
                                 max=None, allowed=None))
    out: list[ir.Expectation] = []
    for col in columns:
        name = col.name
        out.append(_expectation("expect_column_to_exist", "missing", name))
        if col.type in PANDAS_TYPES:
            out.append(_expectation("expect_column_values_to_be_in_type_list", "type", name,
                                    type_list=PANDAS_TYPES[col.type]))
        if not col.nullable or name == ts:
            out.append(_expectation("expect_column_values_to_not_be_null", "nulls", name))
        if col.min is not None:
            out.append(_expectation("expect_column_values_to_be_between", "min", name,
                                    min_value=_number(col.min)))
        if col.max is not None:
            out.append(_expectation("expect_column_values_to_be_between", "max", name,
                                    max_value=_number(col.max)))
        if col.allowed is not None:
            out.append(_expectation("expect_column_values_to_be_in_set", "allowed", name,
                                    value_set=list(col.allowed)))
    if source.min_rows is not None:
        out.append(_expectation("expect_table_row_count_to_be_between", "rows",
                                min_value=source.min_rows))
    if source.max_staleness_seconds is not None:
        out.append(_expectation("expect_column_max_to_be_between", "freshness", ts,
                                min_value={"$PARAMETER": FRESHNESS_PARAMETER}))
    return out
