"""What an environment costs per month, and what a change adds or saves.

    prices.py    mlc's default price list (docs/cost.md says where it comes from)
    estimate.py  resolved project -> monthly cost per endpoint and scheduled pipeline
    change.py    the old and new estimates -> the plan's cost section, and the budget check

Pure functions over the resolved projects (as JSON-like dicts); no I/O.
"""

from typing import Any

from .estimate import HOURS_PER_MONTH, Estimate, estimate

_CHANGE = ("OVER_BUDGET", "budget_violations", "plan_cost")


def __getattr__(name: str) -> Any:
    # change.py pulls in the policies and the plan's model; resolve (and so `mlc validate`)
    # reads only the price list, so they load when the plan asks for them
    if name in _CHANGE:
        from . import change

        return getattr(change, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["HOURS_PER_MONTH", "OVER_BUDGET", "Estimate", "budget_violations", "estimate",
           "plan_cost"]
