"""A writer of protobuf's text format, enough for Triton's config.pbtxt.

A message is a list of (field, value) pairs, written in that order; a value is a str (a
quoted string), a bool, an int or a float (scalars), an `Enum` (a bare identifier), a
message (a list of pairs: written `field { ... }`), or a list of those (a repeated field:
one entry per element). Strings are escaped as the text format's grammar requires
(https://protobuf.dev/reference/protobuf/textformat-spec/): a backslash, both quotes and
every byte outside printable ASCII as an escape, so no value can end its string or add a
field. Nothing else (maps, Any) is needed here: Triton's `parameters` map is written, as
its docs write it, as repeated `{ key: ... value: { ... } }` entries.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Enum:
    """An enum value, written bare (`TYPE_FP32`)."""

    name: str

    def __post_init__(self):
        if not _IDENT.match(self.name):
            raise ValueError(f"{self.name!r} is not an enum identifier")


Scalar = str | bool | int | float | Enum
Message = list[tuple[str, object]]


def quote(text: str) -> str:
    """`text` as a text-format string literal, its UTF-8 bytes escaped where not plain."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in ('"', "'", "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def scalar(value: Scalar) -> str:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool):  # before int: a bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no place in a config")
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    raise TypeError(f"cannot write {type(value).__name__} as a text-format value")


def render(message: Message, indent: int = 0) -> str:
    """The text of `message`, two spaces per level, one field a line, ending in a newline."""
    pad = "  " * indent
    lines: list[str] = []
    for field, value in message:
        if not _IDENT.match(field):
            raise ValueError(f"{field!r} is not a field name")
        values = value if isinstance(value, tuple) else (value,)
        for one in values:
            if isinstance(one, list):  # a message
                lines.append(f"{pad}{field} {{")
                body = render(one, indent + 1)
                if body:
                    lines.append(body.rstrip("\n"))
                lines.append(f"{pad}}}")
            else:
                lines.append(f"{pad}{field}: {scalar(one)}")
    return "".join(line + "\n" for line in lines)


def repeated(*values) -> tuple:
    """A repeated field's values (a tuple, so that a message, a list, stays one value)."""
    return tuple(values)
