"""What Argo Rollouts decides for one measurement of an AnalysisTemplate metric.

Argo Rollouts' Prometheus provider (metricproviders/prometheus/prometheus.go) turns an
instant vector into a list of floats, `result`, one per sample (an empty vector: an empty
list), and hands it to utils/evaluate/evaluate.go, which decides:

- a condition that indexes into `result` (`result[`) while the list is empty is an error,
  checked before the condition runs, so `len(result) > 0 && ...` does not guard it (current
  Argo Rollouts; older ones failed on the index itself): the measurement is Error, and
  enough Errors in a row (consecutiveErrorLimit) abort the rollout;
- a condition that fails to evaluate is Error;
- failureCondition true: Failed; else successCondition true: Successful; both false:
  Inconclusive (with one condition missing, it is the other's negation).

The conditions are expr-lang expressions; those mlc writes use `len`, `isNaN`, `result[0]`,
comparisons, `&&` and `!`, which read the same in Python once the operators are spelled as
Python's.
"""

from __future__ import annotations

import math
import re
from typing import Literal

Phase = Literal["Successful", "Failed", "Inconclusive", "Error"]
_INDEXED = re.compile(r"\bresult\s*\[")


def _python(condition: str) -> str:
    text = condition.replace("&&", " and ").replace("||", " or ")
    return re.sub(r"!(?!=)", " not ", text)


def evaluate(condition: str, result: list[float]) -> bool:
    if _INDEXED.search(condition) and not result:
        raise ValueError("metric result is empty, and the condition indexes into result")
    value = eval(_python(condition), {"__builtins__": {}},  # noqa: S307 - our own conditions
                 {"result": result, "len": len, "isNaN": math.isnan})
    if not isinstance(value, bool):
        raise TypeError(f"expected bool, got {value!r}")
    return value


def decide(metric: dict, result: list[float]) -> Phase:
    """The phase of one measurement of `metric` (an AnalysisTemplate metric) on `result`."""
    success_text = metric.get("successCondition", "")
    failure_text = metric.get("failureCondition", "")
    try:
        success = evaluate(success_text, result) if success_text else False
        failure = evaluate(failure_text, result) if failure_text else False
    except (ValueError, TypeError, IndexError, SyntaxError):
        return "Error"
    if not success_text and not failure_text:
        return "Successful"
    if success_text and not failure_text:
        failure = not success
    elif failure_text and not success_text:
        success = not failure
    if failure:
        return "Failed"
    return "Successful" if success else "Inconclusive"

