"""A value that a label regex matches, for the series an alert rule's unit test exports.

A custom server's `container.metrics` narrows its series by label regexes (RE2, anchored, as
Prometheus reads `=~`); promtool's tests need series with concrete label values that those
regexes match. `example` writes one for the regexes users write for labels (literals, `.`,
classes, `|`, groups, repeats, `\\d`/`\\w`), checks it against the regex, and gives None
for anything else, which resolve refuses rather than write a test that cannot pass.
"""

from __future__ import annotations

import re

try:  # Python 3.11+: the parser behind `re`
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore[no-redef]

_CATEGORY = {"CATEGORY_DIGIT": "0", "CATEGORY_WORD": "a", "CATEGORY_SPACE": " ",
             "CATEGORY_NOT_DIGIT": "a", "CATEGORY_NOT_WORD": "-", "CATEGORY_NOT_SPACE": "a"}


class _Unwritable(Exception):
    pass


def example(regex: str) -> str | None:
    """A string that `regex` fully matches, or None (not a regex, or not one written here)."""
    try:
        compiled = re.compile(regex)
        value = _write(sre_parse.parse(regex))
    except (re.error, _Unwritable, RecursionError):
        return None
    return value if compiled.fullmatch(value) else None


def _write(pattern) -> str:
    return "".join(_item(op, arg) for op, arg in pattern)


def _item(op, arg) -> str:
    name = str(op)
    if name == "LITERAL":
        return chr(arg)
    if name == "NOT_LITERAL":
        return "a" if chr(arg) != "a" else "b"
    if name == "ANY":
        return "0"  # what `5..` of a status code reads: 500
    if name == "IN":
        return _in(arg)
    if name == "BRANCH":
        return _write(arg[1][0])
    if name == "SUBPATTERN":
        return _write(arg[-1])
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, _, item = arg
        return _write(item) * max(low, 0)
    if name == "AT":
        return ""
    if name == "CATEGORY":
        return _CATEGORY.get(str(arg), "a")
    raise _Unwritable(name)


def _in(items) -> str:
    if items and str(items[0][0]) == "NEGATE":
        raise _Unwritable("NEGATE")
    op, arg = items[0]
    name = str(op)
    if name == "LITERAL":
        return chr(arg)
    if name == "RANGE":
        return chr(arg[0])
    if name == "CATEGORY":
        return _CATEGORY.get(str(arg), "a")
    raise _Unwritable(name)
