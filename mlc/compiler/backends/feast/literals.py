"""The only two ways a value gets into generated Python: as a literal, or as a checked name.

Every user string (a description, a tag, an owner, a path) reaches `features.py` through
`py_literal`, which writes it with `repr`: Python reads the result back as exactly that
string, whatever quotes, newlines, braces or code it holds. Names of variables and keyword
arguments go through `identifier`, which refuses anything that is not a plain ASCII name.
Both return `Code`, and the template environment prints nothing else (see definitions.py),
so a value that skipped both cannot reach the output.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Mapping
from typing import Any


class Code(str):
    """Python source text made by this module: safe to print into a generated module."""

    __slots__ = ()


def py_literal(value: Any) -> Code:
    """`value` as a Python literal: None, bool, int, finite float, str, list, tuple, dict."""
    return Code(_literal(value))


def _literal(value: Any) -> str:
    # Exact type checks: a subclass could override __repr__ and print arbitrary text.
    if value is None or type(value) is bool:
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__repr__(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no Python literal")
        return float.__repr__(float(value))
    if isinstance(value, str):
        return str.__repr__(str.__str__(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"dict keys in generated code must be strings, got {key!r}")
        items = sorted((str.__str__(k), value[k]) for k in keys)
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in items) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as a Python literal: {value!r}")


def is_identifier(text: Any) -> bool:
    """A plain ASCII Python name that is not a keyword.

    Non-ASCII names are refused because Python NFKC-normalizes them: two different strings
    could name the same variable.
    """
    return (isinstance(text, str) and text.isascii() and text.isidentifier()
            and not keyword.iskeyword(text))


def identifier(text: Any) -> Code:
    if not is_identifier(text):
        raise ValueError(f"{text!r} is not a plain Python identifier")
    return Code(str.__str__(text))
