"""One shape for what validate and plan report: a diagnostic (with its place in ml.yaml or an
overlay) or a plan risk (about an object or an ml.yaml path, so at the project file)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, Severity

ERROR, WARNING, NOTE = "error", "warning", "note"


@dataclass(frozen=True)
class Finding:
    code: str
    level: str  # error | warning | note
    message: str  # one line
    details: tuple[str, ...] = ()  # help and notes, shown under the message
    file: str | None = None  # relative to the folder mlc runs in, with `/`
    line: int = 0
    column: int = 0
    end_column: int = 0


def _shown_file(root: Path, file: str) -> str:
    """Paths as the repository names them: a project in `-C ml/` has `ml/ml.yaml`."""
    path = os.path.relpath(os.path.join(root, file), os.getcwd())
    return path.replace(os.sep, "/")


def from_diagnostics(diagnostics: Iterable[Diagnostic], root: Path) -> list[Finding]:
    out = []
    for d in diagnostics:
        details = tuple(f"note: {n}" for n in d.notes) + ((f"help: {d.help}",) if d.help else ())
        span = d.span
        out.append(Finding(
            d.code, ERROR if d.severity is Severity.ERROR else WARNING,
            f"{d.message} (at `{d.dotted_path}`)" if d.path else d.message, details,
            _shown_file(root, span.file) if span and span.file else None,
            span.line if span else 0, span.column if span else 0,
            span.end_column if span else 0))
    return out


def from_plan(plan: Mapping[str, Any], root: Path, project_file: str) -> list[Finding]:
    """The risks of a plan (its documented JSON form), each at the project file."""
    out = []
    for env in plan.get("environments", []):
        for risk in env.get("risks", []):
            level = ERROR if risk.get("blocks_apply") and not risk.get("accepted") else (
                WARNING if risk.get("severity") == "high" else NOTE)
            details = []
            if risk.get("subject"):
                details.append(f"subject: {risk['subject']}")
            if risk.get("blocks_apply"):
                flag = risk.get("override")
                details.append("apply refuses this" + (f" without {flag}" if flag else ""))
            if risk.get("accepted"):
                details.append(f"accepted: {risk['accepted']}")
            out.append(Finding(risk["code"], level, f"{env['name']}: {risk['message']}",
                               tuple(details), _shown_file(root, project_file)))
    return out
