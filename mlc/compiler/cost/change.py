"""The plan's cost section: the new estimate, the old one, the delta; and the budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..policy.builtin import OVER_BUDGET, Violation
from .estimate import CATEGORIES, HOURS_PER_MONTH, Estimate, estimate

BUDGET_SUBJECT = "platform.cost.monthlyBudget"


def _cents(value: float) -> float:
    return round(value + 0.0, 2)


def plan_cost(old: Mapping[str, Any] | None, new: Mapping[str, Any], *,
              old_known: bool = True) -> dict[str, Any]:
    """The JSON form: per line and in total, monthly low/high and the delta against `old`.

    `old` None with `old_known`: there is no old tree (everything is new); without it, the
    old tree's project is unknown and so is the delta (None).
    """
    # The old project at the new prices: a price change alone is not a change of the project.
    settings = (new.get("platform") or {}).get("cost") or {}
    after = estimate(new, settings)
    before = estimate(old, settings) if old is not None else Estimate()
    known = old is not None or old_known
    was = {line.subject: line for line in before.lines}
    now = {line.subject: line for line in after.lines}
    order = ["serving", "stream scoring", *CATEGORIES.values(), "ingestion"]
    subjects = sorted(set(was) | set(now), key=lambda s: (
        order.index((now.get(s) or was[s]).category), s))
    lines = []
    for subject in subjects:
        a, b = now.get(subject), was.get(subject)
        ref = a or b
        lines.append({
            "category": ref.category, "subject": subject,
            "monthly_min": _cents(a.low if a else 0.0),
            "monthly_max": _cents(a.high if a else 0.0),
            "delta_min": _cents((a.low if a else 0.0) - (b.low if b else 0.0)) if known else None,
            "delta_max": _cents((a.high if a else 0.0) - (b.high if b else 0.0))
            if known else None,
        })
    return {
        "currency": "USD",
        "hours_per_month": HOURS_PER_MONTH,
        "lines": lines,
        "total": {"monthly_min": _cents(after.low), "monthly_max": _cents(after.high),
                  "delta_min": _cents(after.low - before.low) if known else None,
                  "delta_max": _cents(after.high - before.high) if known else None},
        "per_thousand_predictions": {k: (round(v, 6) if v is not None else None)
                                     for k, v in sorted(after.per_thousand.items())},
        "budget": settings.get("monthly_budget"),
        "unpriced_gpu_types": after.unpriced,
    }


def budget_violations(cost: Mapping[str, Any]) -> list[Violation]:
    budget, high = cost.get("budget"), cost["total"]["monthly_max"]
    if budget is None or high <= budget:
        return []
    return [Violation(OVER_BUDGET, BUDGET_SUBJECT, f"this environment may cost up to "
                      f"{high:,.2f} USD per month (every endpoint at its max replicas), over "
                      f"its budget of {budget:,.2f}")]
