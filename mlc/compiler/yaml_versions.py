"""Plain scalars that YAML 1.1 reads differently from YAML 1.2.

mlc reads ml.yaml under YAML 1.2 (load.py), but many tools around it still read YAML 1.1:
PyYAML, go-yaml v2, older editors and linters. `learningRate: 1e-3` is a float to mlc and a
string to PyYAML; `enabled: yes` is a string to mlc and `true` to PyYAML; `mode: 017` is
17 to mlc and 15 to go-yaml v2. The lint (MLC385) names such a scalar and how to write it
so that both read the same. The YAML 1.1 rules here are the resolvers of its type
repository (yaml.org/type, 2005), as PyYAML implements them, plus `y`/`n`, which the
repository lists as booleans and go-yaml v2 reads so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

_BOOL_11 = {**{w: True for w in ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on",
                                 "On", "ON")},
            **{w: False for w in ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off",
                                  "Off", "OFF")}}
_NULL_11 = re.compile(r"~|null|Null|NULL|")
_INT_11 = re.compile(r"[-+]?(0b[0-1_]+|0[0-7_]+|(0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+"
                     r"|[1-9][0-9_]*(:[0-5]?[0-9])+)")
# The repository's float pattern takes `1.4.0` too; PyYAML narrowed it to one dot, and what
# readers do is what counts here.
_FLOAT_11 = re.compile(r"[-+]?([0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?"
                       r"|\.[0-9][0-9_]*([eE][-+][0-9]+)?"
                       r"|[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*|\.(inf|Inf|INF))|\.(nan|NaN|NAN)")
_TIMESTAMP_11 = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
                           r"([Tt ]+[0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]*)?"
                           r"([ \t]*(Z|[-+][0-9]{1,2}(:[0-9]{2})?))?)?")


class _Timestamp(str):
    """A YAML 1.1 timestamp: a date or time to 1.1 readers, a string to 1.2 ones."""


def _sexagesimal(text: str) -> float:
    sign = -1 if text.startswith("-") else 1
    value = 0.0
    for part in text.lstrip("+-").split(":"):
        value = value * 60 + float(part)
    return sign * value


def _int_11(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").replace("_", "")
    if ":" in body:
        return int(sign * _sexagesimal(body))
    if body.startswith("0b"):
        return sign * int(body[2:], 2)
    if body.startswith("0x"):
        return sign * int(body[2:], 16)
    if len(body) > 1 and body.startswith("0"):
        return sign * int(body, 8)
    return sign * int(body)


def _float_11(text: str) -> float:
    body = text.replace("_", "")
    lowered = body.lower()
    if lowered.endswith(".inf"):
        return -math.inf if body.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    if ":" in body:
        return _sexagesimal(body)
    return float(body)


def read_11(text: str) -> Any:
    """A plain scalar as a YAML 1.1 reader resolves it."""
    if _NULL_11.fullmatch(text):
        return None
    if text in _BOOL_11:
        return _BOOL_11[text]
    if _INT_11.fullmatch(text):
        return _int_11(text)
    if _FLOAT_11.fullmatch(text):
        return _float_11(text)
    if _TIMESTAMP_11.fullmatch(text):
        return _Timestamp(text)
    return text


@dataclass(frozen=True)
class Difference:
    text: str
    as_12: Any
    as_11: Any

    def message(self) -> str:
        return (f"`{self.text}` reads as {_shown(self.as_12)} in YAML 1.2 (mlc) but as "
                f"{_shown(self.as_11)} in YAML 1.1 (PyYAML, go-yaml v2 and tools built on them)")

    def help(self) -> str:
        if isinstance(self.as_12, float):
            return f"write `{same_in_both(self.as_12)}`, which both versions read as this number"
        if isinstance(self.as_12, int) and not isinstance(self.as_12, bool):
            return f"write the decimal `{self.as_12}`, which both versions read alike"
        return f'quote it (`"{self.text}"`) if it is meant as text'


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        # 1.1's 1.0 and 1.2's 1.0 are both floats; an int and a float differ in the output
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def difference(text: str, as_12: Any) -> Difference | None:
    """How a plain scalar that YAML 1.2 reads as `as_12` reads under YAML 1.1, if otherwise."""
    as_11 = read_11(text)
    if isinstance(as_11, _Timestamp):
        return Difference(text, as_12, as_11)
    if _same(as_12, as_11):
        return None
    return Difference(text, as_12, as_11)


def same_in_both(value: float) -> str:
    """A float spelled so that YAML 1.1 and 1.2 both read it: 1.1 needs a dot, and a sign on
    the exponent (`1.0e-10`, not `1e-10`)."""
    text = repr(value)
    if "e" not in text:
        return text if "." in text else text + ".0"
    mantissa, exponent = text.split("e")
    if "." not in mantissa:
        mantissa += ".0"
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-')}"


def _shown(value: Any) -> str:
    if isinstance(value, _Timestamp):
        return "a date"
    if isinstance(value, bool):
        return f"the boolean `{str(value).lower()}`"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return f"the number `{value}`"
    return f"the string `{value}`"
