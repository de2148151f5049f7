"""validate: the merged document against the ml.yaml schema, errors mapped to file:line:col.

pydantic does the checking (strict: no `"2"` for 2, no `1` for true); this pass turns its
errors into diagnostics with stable codes, points them at the layer that set the value, and
adds what pydantic cannot know: "did you mean" for keys and enum values, and a scan for
secret values written in plain text (literal_secrets.py).
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from ..schema import API_VERSION, Project
from . import literal_secrets
from .diagnostics import Diagnostics, FieldPath, Span, did_you_mean, format_path
from .load import Document

# pydantic error type -> (code, what it means); the codes are documented in docs/diagnostics.md
_CODES: dict[str, str] = {
    "extra_forbidden": "MLC101",
    "missing": "MLC103",
    "union_tag_not_found": "MLC103",
    "mlc_name": "MLC104",
    "mlc_key": "MLC104",  # a Kubernetes key or variable name: the message says what fits
    "mlc_quantity": "MLC105",
    "mlc_cron": "MLC106",
    "mlc_duration": "MLC107",
    "mlc_image": "MLC108",
    "literal_error": "MLC109",
    "enum": "MLC109",
    "union_tag_invalid": "MLC109",
    "mlc_range": "MLC111",
    "greater_than": "MLC111",
    "greater_than_equal": "MLC111",
    "less_than": "MLC111",
    "less_than_equal": "MLC111",
    "too_short": "MLC111",
    "too_long": "MLC111",
    "string_too_short": "MLC111",
    "string_too_long": "MLC111",
    "mlc_label": "MLC113",
    "mlc_one_of": "MLC114",
    "string_pattern_mismatch": "MLC115",
    "mlc_path": "MLC116",
}
WRONG_TYPE = "MLC102"
BAD_API_VERSION = "MLC112"


def locate(doc: Document, path: FieldPath) -> Span | None:
    """Where to point for `path`: a mapping or list at its key (the line that names it), a
    scalar at its value, and a path that does not exist at its deepest existing parent."""
    node: Any = doc.data
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return doc.span_for(path)
    if isinstance(node, (dict, list)) and path in doc.key_spans:
        return doc.key_spans[path]
    return doc.span_for(path)


def validate_document(doc: Document, diags: Diagnostics) -> Project | None:
    """The typed project, or None after adding diagnostics for everything that is wrong."""
    literal_secrets.scan(doc, diags)
    try:
        project = Project.model_validate(doc.data, strict=True)
    except ValidationError as exc:
        _report(doc, exc, diags)
        return None
    return None if diags.has_errors() else project


# What a lone layer is checked for: values wrong whatever the other layers say (types, ranges,
# formats, choices, unknown keys, literal secrets). Not missing keys, nor one-of rules, nor
# references: a base may leave those to the environments.
_LAYER_CODES = frozenset({"MLC101", WRONG_TYPE, "MLC104", "MLC105", "MLC106", "MLC107",
                          "MLC108", "MLC109", literal_secrets.LITERAL_SECRET, "MLC111",
                          "MLC113", "MLC115"})


def validate_layer(doc: Document, diags: Diagnostics) -> None:
    """ml.yaml on its own: a bad value there is an error even where every environment
    replaces it, because the next environment added would inherit it."""
    found = Diagnostics()
    literal_secrets.scan(doc, found)
    try:
        Project.model_validate(doc.data, strict=True)
    except ValidationError as exc:
        _report(doc, exc, found)
    diags.extend(d for d in found.items if d.code in _LAYER_CODES)


# ---------------------------------------------------------------------------------------
# pydantic errors -> diagnostics


def _report(doc: Document, exc: ValidationError, diags: Diagnostics) -> None:
    seen: set[FieldPath] = set()
    for err in exc.errors(include_url=False):
        path = data_path(doc.data, err["loc"])
        kind = err["type"]
        key_error = "[key]" in err["loc"]  # the mapping key itself is invalid, not its value
        # A value that fits no branch of a union yields one error per branch; one is enough.
        if path in seen and kind not in ("extra_forbidden", "missing"):
            continue
        seen.add(path)
        if kind == "extra_forbidden":
            _unknown_key(doc, path, diags)
        elif kind in ("missing", "union_tag_not_found"):
            _missing(doc, path, err, diags)
        elif kind == "literal_error" and path == ("apiVersion",):
            diags.error(BAD_API_VERSION, f"unsupported apiVersion `{err['input']}`",
                        span=doc.span_for(path), path=path,
                        help=f"this version of mlc reads `apiVersion: {API_VERSION}`")
        elif kind in ("literal_error", "enum", "union_tag_invalid"):
            _bad_choice(doc, path, err, diags)
        elif kind == "string_pattern_mismatch":
            pattern = err.get("ctx", {}).get("pattern", "")
            diags.error("MLC115", f"invalid value `{err['input']}` for `{path[-1]}`: it must "
                        f"match `{pattern}`", span=locate(doc, path), path=path,
                        help=_field_description(doc, path))
        elif kind in _CODES:
            span = doc.key_spans.get(path) if key_error else (
                _overlay_child(doc, path) or locate(doc, path))
            diags.error(_CODES[kind], _message(err), span=span or locate(doc, path), path=path,
                        help=_HELP.get(kind))
        else:
            diags.error(WRONG_TYPE, _wrong_type_message(err), span=locate(doc, path), path=path,
                        help=_type_help(err))


def _overlay_child(doc: Document, path: FieldPath) -> Span | None:
    """For a check over a whole mapping (`minReplicas` above `maxReplicas`): the first of its
    values that an overlay set, since that later layer is what made the mapping wrong."""
    node: Any = doc.data
    for part in path:
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return None
    for key in node:
        span = doc.spans.get((*path, key))
        if span is not None and span.file != doc.file:
            return span
    return None


_HELP = {
    "mlc_name": "use lowercase letters, digits and `-`, e.g. `fraud-classifier`",
    "mlc_quantity": "CPU: `500m`, `1`, `2.5`; memory: `512Mi`, `4Gi`",
    "mlc_cron": "for example `0 3 * * *` (03:00 every day) or `@hourly`",
    "mlc_duration": "for example `30s`, `15m`, `24h` or `7d`",
    "mlc_image": "pin by digest: `ghcr.io/acme/app@sha256:...`",
}


def _message(err: dict) -> str:
    msg = err["msg"]
    return msg[0].lower() + msg[1:] if msg else msg


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"an integer `{value}`"
    if isinstance(value, float):
        return f"a number `{value}`"
    if isinstance(value, str):
        return f'a string "{value}"' if len(value) < 40 else "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


_EXPECTED = {
    "string_type": "a string", "int_type": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "bool_type": "`true` or `false`", "dict_type": "a mapping",
    "list_type": "a list", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "tuple_type": "a list", "int_parsing": "an integer", "float_parsing": "a number",
    "bool_parsing": "`true` or `false`", "none_required": "null",
}


def _wrong_type_message(err: dict) -> str:
    expected = _EXPECTED.get(err["type"])
    if expected is None:
        return _message(err)
    return f"expected {expected}, found {_describe(err['input'])}"


def _type_help(err: dict) -> str | None:
    value = err.get("input")
    if isinstance(value, str) and err["type"] in ("int_type", "float_type"):
        return f"write the number without quotes: {value}"
    if isinstance(value, str) and err["type"] == "bool_type":
        return "write `true` or `false` without quotes"
    if isinstance(value, bool) and err["type"] == "string_type":
        return f'quote it to make it a string: "{str(value).lower()}"'
    if isinstance(value, (int, float)) and err["type"] == "string_type":
        return f'quote it to make it a string: "{value}"'
    return None


def _unknown_key(doc: Document, path: FieldPath, diags: Diagnostics) -> None:
    key = str(path[-1])
    model = _model_at(path[:-1], doc.data)
    candidates = [f.alias or name for name, f in model.model_fields.items()] if model else []
    where = f" in `{_dotted(path[:-1])}`" if path[:-1] else " at the top level"
    diags.error("MLC101", f"unknown key `{key}`{where}",
                span=doc.key_spans.get(path) or doc.span_for(path), path=path,
                help=did_you_mean(key, candidates) or "remove it")


def _field_description(doc: Document, path: FieldPath) -> str | None:
    model = _model_at(path[:-1], doc.data)
    for name, f in (model.model_fields.items() if model else ()):
        if (f.alias or name) == path[-1] and f.description:
            return f.description[0].lower() + f.description[1:]
    return None


def _missing(doc: Document, path: FieldPath, err: dict, diags: Diagnostics) -> None:
    if err["type"] == "union_tag_not_found":
        key = err.get("ctx", {}).get("discriminator", "type").strip("'")
        parent, path = path, (*path, key)
    else:
        parent = path[:-1]
    where = f" in `{_dotted(parent)}`" if parent else " at the top level"
    diags.error("MLC103", f"missing required key `{path[-1]}`{where}",
                span=locate(doc, parent), path=path, help=f"add `{path[-1]}:`")


def _bad_choice(doc: Document, path: FieldPath, err: dict, diags: Diagnostics) -> None:
    ctx = err.get("ctx", {})
    raw = ctx.get("expected") or ctx.get("expected_tags") or ""
    options = re.findall(r"'([^']*)'", str(raw))
    value = err.get("input")
    if err["type"] == "union_tag_invalid":  # point at the `type:` value, not the mapping
        value = ctx.get("tag")
        path = (*path, str(ctx.get("discriminator", "type")).strip("'"))
    shown = value if isinstance(value, str) else _describe(value)
    diags.error("MLC109", f"invalid value `{shown}` for `{path[-1] if path else 'document'}`",
                span=locate(doc, path), path=path,
                help=did_you_mean(str(value), options) if options else None)


def data_path(data: Any, loc: tuple) -> FieldPath:
    """pydantic's location, less the union-branch names it inserts, as a path into the data."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and part not in node and (
                not any(isinstance(v, str) and v == part for v in node.values())
                and not _is_branch_name(part)):
            path.append(part)  # a key that is not there: missing or unknown
            node = None
    return tuple(path)


def _is_branch_name(part: str) -> bool:
    return part[:1].isupper() or "[" in part or part in ("str", "int", "float", "bool")


def _model_at(path: FieldPath, data: Any) -> type[BaseModel] | None:
    """The schema model that describes the mapping at `path`, for key suggestions."""
    tp: Any = Project
    node = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) else None)
        tp = _child_type(tp, part, node)
        if tp is None:
            return None
    return _pick_model(tp, node)


def _child_type(tp: Any, part: str | int, node: Any) -> Any:
    tp = _pick_model(tp, node) or tp
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, f in tp.model_fields.items():
            if (f.alias or name) == part:
                return f.annotation
        return None
    origin = typing.get_origin(tp)
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin is list:
        return typing.get_args(tp)[0]
    return None


def _pick_model(tp: Any, node: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _pick_model(typing.get_args(tp)[0], node)
    if origin in (typing.Union, types.UnionType):
        models = [m for m in (_pick_model(a, node) for a in typing.get_args(tp)) if m]
        tag = node.get("type") if isinstance(node, dict) else None
        for m in models:
            field = m.model_fields.get("type")
            if field is not None and tag in typing.get_args(field.annotation):
                return m
        return models[0] if models else None
    return None


def _dotted(path: FieldPath) -> str:
    return format_path(path)
