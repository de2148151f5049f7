"""What an environment costs per month, and what a change adds or saves.

    prices.py    mlc's default price list (docs/cost.md says where it comes from)
    estimate.py  resolved project -> monthly cost per endpoint and scheduled pipeline
    change.py    the old and new estimates -> the plan's cost section, and the budget check

Pure functions over the resolved projects (as JSON-like dicts); no I/O.
"""

from .change import OVER_BUDGET, budget_violations, plan_cost
from .estimate import HOURS_PER_MONTH, Estimate, estimate

__all__ = ["HOURS_PER_MONTH", "OVER_BUDGET", "Estimate", "budget_violations", "estimate",
           "plan_cost"]
