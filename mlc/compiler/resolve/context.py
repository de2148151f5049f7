"""What every resolve step shares: the typed project, source positions and diagnostics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ...schema import Project
from ..diagnostics import Diagnostics, FieldPath, did_you_mean
from ..ir import Origin
from ..load import Document
from ..validate import locate

UNKNOWN_REFERENCE = "MLC201"
CYCLE = "MLC202"
NAME_CLASH = "MLC203"
BAD_EXPRESSION = "MLC206"
UNKNOWN_COLUMN = "MLC207"
WRONG_KIND = "MLC208"


@dataclass
class Context:
    project: Project
    doc: Document
    env: str
    diags: Diagnostics
    # The environment may use settings that work on one machine only (platform.development).
    development: bool = False

    def origin(self, path: FieldPath) -> Origin:
        span = locate(self.doc, path)
        return Origin(file=span.file if span else self.doc.file, line=span.line if span else 0,
                      path=".".join(str(p) for p in path))

    def error(self, code: str, message: str, path: FieldPath, help: str | None = None, *,
              redact: bool = False) -> None:
        self.diags.error(code, message, span=locate(self.doc, path), path=path, help=help,
                         redact=redact)

    def warning(self, code: str, message: str, path: FieldPath, help: str | None = None) -> None:
        self.diags.warning(code, message, span=locate(self.doc, path), path=path, help=help)

    def check_ref(self, name: str | None, known: Iterable[str], what: str, path: FieldPath,
                  section: str) -> bool:
        """True when `name` names a declared `what`; otherwise report it with a suggestion."""
        if name is None:
            return False
        options = list(known)
        if name in options:
            return True
        hint = did_you_mean(name, options)
        if hint is None:
            hint = f"declare it under `{section}:`"
        self.error(UNKNOWN_REFERENCE, f"unknown {what} `{name}`", path, help=hint)
        return False
