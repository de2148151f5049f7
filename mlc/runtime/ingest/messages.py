"""A message's value -> one row per feature view it feeds, or the reason it feeds none.

A message is a JSON object holding, for every view of the source, the entity join keys,
the source's timestamp field and the view's fields. One missing or mistyped value makes the
whole message a `schema` failure: writing some views and not others would leave the online
store telling two stories about one event.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from mlc.compiler import ir

_INTS = ("int32", "int64")
_FLOATS = ("float32", "float64")


class BadMessage(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason  # a metrics.INGEST_FAILURE_REASONS value


@dataclass(frozen=True)
class ViewShape:
    view: str
    columns: dict[str, str]  # join keys and fields -> value type, in the view's order


def shapes(project: ir.ResolvedProject, ingestion: ir.Ingestion) -> list[ViewShape]:
    out = []
    for name in ingestion.views:
        v = project.feature_views[name]
        keys = {project.entities[e].join_key: project.entities[e].type for e in v.entities}
        out.append(ViewShape(name, {**keys, **{f.name: f.type for f in v.fields}}))
    return out


def decode(value: bytes | None, shapes: list[ViewShape],
           timestamp_field: str) -> dict[str, dict[str, object]]:
    """The row of each view (its columns plus the timestamp), by view name."""
    try:
        body = json.loads(value if value is not None else b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage("decode", f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadMessage("decode", f"a JSON {type(body).__name__}, not an object")
    moment = _timestamp(body.get(timestamp_field), timestamp_field)
    out = {}
    for shape in shapes:
        row: dict[str, object] = {}
        for column, kind in shape.columns.items():
            if column not in body or body[column] is None:
                raise BadMessage("schema", f"`{column}` is missing (view {shape.view})")
            row[column] = _typed(body[column], kind, column)
        row[timestamp_field] = moment
        out[shape.view] = row
    return out


def _typed(value: object, kind: str, column: str) -> object:
    ok = {
        "bool": isinstance(value, bool),
        "string": isinstance(value, str),
        "bytes": isinstance(value, str),
        "unix_timestamp": isinstance(value, int | float | str) and not isinstance(value, bool),
    }.get(kind)
    if kind in _INTS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind in _FLOATS:
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value))
        value = float(value) if ok else value  # type: ignore[arg-type]
    if not ok:
        raise BadMessage("schema", f"`{column}` is {type(value).__name__} {value!r}, "
                         f"expected {kind}")
    if kind == "unix_timestamp":
        return _timestamp(value, column)
    if kind == "bytes":
        return value.encode("utf-8")  # type: ignore[union-attr]
    return value


def _timestamp(value: object, column: str) -> datetime:
    """Seconds since the epoch, or an ISO 8601 string (UTC unless it says otherwise)."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise BadMessage("schema", f"`{column}` is not a time: {exc}") from exc
    raise BadMessage("schema", f"`{column}` is missing or not a time")
