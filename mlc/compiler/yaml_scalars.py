"""YAML 1.2 core-schema scalars as plain Python values (section 10.3.2 of YAML 1.2.2):
`no` stays a string, `1e-4` is a float, dates stay strings, and nothing comes out as a
ruamel wrapper type. Used by the composer (yaml_compose.py) for every plain scalar."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CORE", "EXPECTED", "TYPED_TAGS", "resolve_plain", "show_tag", "type_name"]

# `[0-9]` rather than `\d`, which matches any digit
_NULL = re.compile(r"null|Null|NULL|~|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")

CORE = "tag:yaml.org,2002:"
TYPED_TAGS = {f"{CORE}{t}": t for t in ("int", "float", "bool", "null")}
EXPECTED = {"int": (int,), "float": (int, float), "bool": (bool,), "null": (type(None),)}


def resolve_plain(text: str) -> Any:
    """A plain (unquoted, untagged) scalar under the YAML 1.2 core schema."""
    if _NULL.fullmatch(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT10.fullmatch(text):
        return int(text)  # may raise ValueError past Python's digit limit; caller reports it
    if _INT8.fullmatch(text) or _INT16.fullmatch(text):
        return int(text, 0)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return float("-inf") if text.startswith("-") else float("inf")
    if _NAN.fullmatch(text):
        return float("nan")
    return text


def show_tag(tag: str) -> str:
    return "!!" + tag[len(CORE):] if tag.startswith(CORE) else tag


def type_name(value: Any) -> str:
    kinds = ((type(None), "null"), (bool, "a boolean"), (dict, "a mapping"), (list, "a list"),
             ((int, float), "a number"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "a string")


# ---------------------------------------------------------------------------------------
# Composing
