"""The source-changes section of the text and markdown plans: each value of the project that
differs from the base commit's, and the layer that set it (layers.py; the JSON plan carries
the same as data, `source_changes`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..diagnostics import printable
from .diff import MISSING

HEADING = "Source changes (the file and layer that set each value)"
MARKDOWN_SHOWN = 30  # a comment lists this many, then counts the rest
_WIDE = 60  # values past this are cut in the comment


def _value(value: Any, wide: int | None = None) -> str:
    text = "(none)" if value is MISSING else json.dumps(value, sort_keys=True,
                                                        ensure_ascii=False)
    return text if wide is None or len(text) <= wide else text[:wide - 1] + "…"


def _sign(change: Any) -> str:
    return "+" if change.old is MISSING else "-" if change.new is MISSING else "~"


def _what(change: Any, wide: int | None = None) -> str:
    if change.old is MISSING:
        return _value(change.new, wide)
    if change.new is MISSING:
        return f"{_value(change.old, wide)} removed"
    return f"{_value(change.old, wide)} -> {_value(change.new, wide)}"


def text_lines(sources: Sequence[Any]) -> list[str]:
    if not sources:
        return []
    lines = ["", f"  {HEADING}:"]
    for c in sources:
        lines.append(printable(f"    {_sign(c)} {c.path}: {_what(c)}  ({c.origin}, {c.layer})"))
    return lines


def markdown_lines(sources: Sequence[Any]) -> list[str]:
    if not sources:
        return []
    lines = [f"**{HEADING}**", ""]
    for c in sources[:MARKDOWN_SHOWN]:
        lines.append(f"- `{_code(c.path)}`: `{_code(_what(c, _WIDE))}` "
                     f"({_code_span(c.origin)}, {c.layer})")
    rest = len(sources) - MARKDOWN_SHOWN
    if rest > 0:
        lines.append(f"- … and {rest} more: run `mlc plan` to see them")
    return [*lines, ""]


def _code(text: str) -> str:
    return printable(text).replace("`", "'")


def _code_span(text: str) -> str:
    return f"`{_code(text)}`"
