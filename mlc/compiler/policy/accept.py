"""Violations become plan risks; an `acceptedRisks:` entry with the same code and subject
turns one into an accepted risk, shown with its reason and not blocking apply."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..plan.model import HIGH, MEDIUM, Risk
from .builtin import Violation, violations


def policy_risks(old: Mapping[str, Any] | None, new: Mapping[str, Any],
                 more: Iterable[Violation] = ()) -> tuple[list[Risk], list[str]]:
    """The risks of the new project's violations (the built-in policies', and `more`: the
    budget's and the policies file's), and notes on acceptances that match none."""
    accepted = {(a.get("code"), a.get("subject")): a for a in new.get("accepted_risks") or []
                if isinstance(a, dict)}
    found = sorted({*violations(old, new), *more})
    risks = []
    for v in found:
        entry = accepted.get((v.code, v.subject))
        severity = HIGH if v.blocks else MEDIUM
        if entry is None:
            risks.append(Risk(v.code, severity, v.message, subject=v.subject,
                              blocks_apply=v.blocks))
        else:
            risks.append(Risk(v.code, severity, v.message, subject=v.subject,
                              accepted=f"{entry.get('reason')} ({_where(entry)})"))
    used = {(v.code, v.subject) for v in found}
    notes = [f"acceptedRisks entry {code} for `{subject}` ({_where(a)}) matches no violation; "
             "remove it" for (code, subject), a in sorted(accepted.items(), key=str)
             if (code, subject) not in used]
    return risks, notes


def _where(entry: Mapping[str, Any]) -> str:
    origin = entry.get("origin") or {}
    return f"{origin.get('file')}:{origin.get('line')}"
