"""Diagnostics: errors are data, collected across a whole run and rendered like a compiler.

Every pass appends to a `Diagnostics` collection instead of raising on the first problem,
so that one `mlc validate` shows everything that is wrong. A pass that cannot go on
(for example, YAML that does not parse) stops the pipeline by raising `CompileFailed`
with what has been collected so far.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .reading import ReadRefused, read_project_file, read_regular_file

SOURCE_READ_LIMIT = 1 << 20  # the loader refuses larger files; never quote from one

FieldPath = tuple[str | int, ...]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Span:
    """A place in a source file; line and column are 1-based, as editors show them."""

    file: str
    line: int = 0
    column: int = 0
    end_column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    code: str  # stable, documented in docs/diagnostics.md, e.g. "MLC201"
    message: str
    span: Span | None = None
    path: FieldPath = ()
    help: str | None = None
    severity: Severity = Severity.ERROR
    notes: tuple[str, ...] = ()
    # False for a file that did not load: it may be anything (a secret, another program's
    # data), so rendering shows the offending token alone, never its whole line
    excerpt: bool = True
    # True where the span is a secret written in plain text: the excerpt masks it and leaves
    # out the rest of its line, so a CI log or PR comment never repeats the secret
    redact: bool = False

    @property
    def dotted_path(self) -> str:
        return format_path(self.path)

    def sort_key(self) -> tuple:
        span = self.span or Span("")
        return (span.file, span.line, span.column, self.code, self.message)

    def to_json(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "file": self.span.file if self.span else None,
            "line": self.span.line if self.span else None,
            "column": self.span.column if self.span else None,
            "path": self.dotted_path,
            "help": self.help,
            "notes": list(self.notes),
        }


def format_path(path: FieldPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A help line naming the closest candidate, or listing the few that exist."""
    options = sorted(set(candidates))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    if options and len(options) <= 12:
        return "expected one of: " + ", ".join(f"`{o}`" for o in options)
    return None


@dataclass
class Diagnostics:
    """An ordered collection of diagnostics; passes append, the CLI renders."""

    items: list[Diagnostic] = field(default_factory=list)
    # the same finding reached by two passes is reported once; a set keeps that check constant
    # time, where a scan of the list made thousands of warnings quadratic
    _seen: set[Diagnostic] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._seen.update(self.items)

    def add(self, diagnostic: Diagnostic) -> None:
        if diagnostic not in self._seen:
            self._seen.add(diagnostic)
            self.items.append(diagnostic)

    def error(self, code: str, message: str, *, span: Span | None = None, path: FieldPath = (),
              help: str | None = None, notes: Sequence[str] = (), excerpt: bool = True,
              redact: bool = False) -> None:
        self.add(Diagnostic(code, message, span, tuple(path), help, Severity.ERROR, tuple(notes),
                            excerpt, redact))

    def warning(self, code: str, message: str, *, span: Span | None = None, path: FieldPath = (),
                help: str | None = None, notes: Sequence[str] = (), excerpt: bool = True) -> None:
        self.add(Diagnostic(code, message, span, tuple(path), help, Severity.WARNING,
                            tuple(notes), excerpt))

    def extend(self, other: Iterable[Diagnostic]) -> None:
        for d in other:
            self.add(d)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.WARNING]

    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=Diagnostic.sort_key)

    def raise_if_errors(self) -> None:
        if self.has_errors():
            raise CompileFailed(self)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class CompileFailed(Exception):
    """Raised by a pass that cannot continue; carries every diagnostic collected so far."""

    def __init__(self, diagnostics: Diagnostics):
        self.diagnostics = diagnostics
        first = diagnostics.errors[0] if diagnostics.errors else None
        super().__init__(f"{first.code}: {first.message}" if first else "compile failed")


# ---------------------------------------------------------------------------------------
# Rendering


def render_text(diagnostics: Iterable[Diagnostic], *, root: Path | None = None,
                color: bool = False) -> str:
    """Render like a compiler: header, location, the source line with a caret, help."""
    lines: list[str] = []
    cache: dict[str, list[str] | None] = {}
    for d in diagnostics:
        sev = d.severity.value
        message = printable(d.message)
        if color:
            tint = "\033[31;1m" if d.severity is Severity.ERROR else "\033[33;1m"
            head = f"{tint}{sev}[{d.code}]\033[0m\033[1m: {message}\033[0m"
        else:
            head = f"{sev}[{d.code}]: {message}"
        lines.append(head)
        if d.span:
            where = f"  --> {printable(str(d.span))}"
            if d.path:
                where += f"  (at `{printable(d.dotted_path)}`)"
            lines.append(where)
            lines.extend(_excerpt(d, root, cache))
        elif d.path:
            lines.append(f"  --> at `{printable(d.dotted_path)}`")
        for note in d.notes:
            lines.append(f"  = note: {printable(note)}")
        if d.help:
            lines.append(f"  = help: {printable(d.help)}")
        lines.append("")
    return "\n".join(lines)


def _excerpt(d: Diagnostic, root: Path | None, cache: dict[str, list[str] | None]) -> list[str]:
    """The source line with a caret under the span; only the token itself when the file did
    not load. Both are escaped after cutting, with the caret moved to match."""
    assert d.span is not None
    source_line = _source_line(d.span, root, cache)
    if source_line is None:
        return []
    start = max(0, d.span.column - 1)
    width = max(1, (d.span.end_column or d.span.column + 1) - d.span.column)
    if not d.excerpt:
        # the token where it stands, its line blanked around it, so the column still shows
        token = source_line[start:start + min(width, MAX_TOKEN)]
        if not token.strip():
            return []
        start = min(start, MAX_SHOWN // 2)
        source_line, width = " " * start + token, len(token)
    if d.redact:
        source_line, width = source_line[:start] + REDACTED, len(REDACTED)
    cut, column = _window(source_line, start + 1)
    before, marked = printable(cut[:column - 1]), printable(cut[column - 1:column - 1 + width])
    shown = before + printable(cut[column - 1:])
    # a span just past the end of the line (something missing there) still gets its caret
    caret = " " * (len(before) + max(0, column - 1 - len(cut))) + "^" * max(1, len(marked))
    number = str(d.span.line)
    pad = " " * len(number)
    return [f"   {pad} |", f"   {number} | {shown}", f"   {pad} | {caret}"]


REDACTED = "<redacted>"
MAX_TOKEN = 40  # characters of a token quoted from a file that did not load


def printable(text: str) -> str:
    """`text` with control and bidirectional-formatting characters written as escapes, so
    that input cannot move the cursor, recolour the terminal or reorder what a reviewer
    reads (CI posts these lines into pull requests)."""
    if text.isprintable() and not _BIDI.intersection(text):
        return text
    out = []
    for char in text:
        if char in _BIDI or (not char.isprintable() and char != "\t"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


# Unicode's bidirectional formatting characters (UAX #9): embeddings, overrides, isolates and
# marks. Most are already not printable by Python's rules; these are the ones that are.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


MAX_SHOWN = 100  # characters of a source line shown; longer lines are cut around the caret


def _window(line: str, column: int) -> tuple[str, int]:
    """A long line cut to MAX_SHOWN characters around `column`, and the column within it."""
    if len(line) <= MAX_SHOWN:
        return line, column
    start = max(0, min(column - MAX_SHOWN // 2, len(line) - MAX_SHOWN))
    cut = line[start:start + MAX_SHOWN]
    if start:
        cut = "…" + cut[1:]
    if start + MAX_SHOWN < len(line):
        cut = cut[:-1] + "…"
    return cut, column - start


def _source_line(span: Span, root: Path | None, cache: dict[str, list[str] | None]) -> str | None:
    if not span.line:
        return None
    if span.file not in cache:
        path = Path(span.file)
        try:
            if root is not None and not path.is_absolute():
                raw = read_project_file(root, span.file, SOURCE_READ_LIMIT)
            else:
                raw = read_regular_file(path, SOURCE_READ_LIMIT)
        except ReadRefused:
            raw = None
        cache[span.file] = (raw.decode("utf-8", errors="replace").splitlines()
                            if raw is not None and len(raw) <= SOURCE_READ_LIMIT else None)
    text = cache[span.file]
    if text is None or span.line > len(text):
        return None
    return text[span.line - 1].rstrip()


def summary_line(diagnostics: Diagnostics) -> str:
    e, w = len(diagnostics.errors), len(diagnostics.warnings)
    parts = []
    if e:
        parts.append(f"{e} error{'s' if e != 1 else ''}")
    if w:
        parts.append(f"{w} warning{'s' if w != 1 else ''}")
    return ", ".join(parts) if parts else "no problems"


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps({"diagnostics": [d.to_json() for d in diagnostics]}, indent=2,
                      sort_keys=True) + "\n"
