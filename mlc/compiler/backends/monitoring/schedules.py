"""How long a cron schedule may go between two runs: the basis of every "not running" alert.

A check that runs hourly is overdue after two hours; one that runs on weekdays at 03:00 is
not overdue on Sunday. The longest gap between consecutive runs answers both, so it is
computed from the schedule itself, in UTC (the pipelines' time zone), over years 2024-2032:
long enough to contain leap days and every weekday/day-of-month combination.

Semantics follow robfig/cron, which Argo's CronWorkflow uses: when both day fields are
restricted a day matches either; `*` and `?` (with or without a step) leave a field open.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

_MACROS = {"@hourly": 3600, "@daily": 86400, "@midnight": 86400, "@weekly": 7 * 86400,
           "@monthly": 31 * 86400, "@yearly": 366 * 86400, "@annually": 366 * 86400}
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
_FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = (
    {},
    {},
    {},
    {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
)
_START = dt.date(2024, 1, 1)
_DAYS = (dt.date(2033, 1, 1) - _START).days


# A pure function of one string that walks nine years of days, called for every check of
# every environment: a project has a handful of distinct schedules, so each is walked once.
@functools.lru_cache(maxsize=1024)
def max_interval_seconds(expr: str) -> int | None:
    """The longest time between two runs of `expr`, or None if it never runs."""
    if expr in _MACROS:
        return _MACROS[expr]
    every = re.fullmatch(r"@every ((\d+(ms|s|m|h))+)", expr)
    if every:
        total = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", every[1]))
        return max(1, int(total))
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"not a cron expression: {expr!r}")
    (minutes, _), (hours, _), (doms, dom_open), (months, _), (dows, dow_open) = (
        _field(text, i) for i, text in enumerate(fields))
    dows = {d % 7 for d in dows}  # 7 is Sunday too
    times = sorted(h * 60 + m for h in hours for m in minutes)
    gap = max((b - a for a, b in zip(times, times[1:], strict=False)), default=0)
    previous = None
    for offset in range(_DAYS):
        day = _START + dt.timedelta(days=offset)
        dom_ok, dow_ok = day.day in doms, day.isoweekday() % 7 in dows
        day_ok = (dom_ok and dow_ok) if (dom_open or dow_open) else (dom_ok or dow_ok)
        if not (day_ok and day.month in months):
            continue
        if previous is not None:
            gap = max(gap, (offset - previous) * 1440 + times[0] - times[-1])
        previous = offset
    if previous is None:
        return None
    return gap * 60 if gap else 86400 * 366  # one run a day, once in the whole span


def _field(text: str, index: int) -> tuple[set[int], bool]:
    low, high = _FIELDS[index]
    names = _NAMES[index]
    values: set[int] = set()
    is_open = False
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            start, end, is_open = low, high, True
        else:
            bounds = [names.get(b.lower(), None) if b.lower() in names else int(b)
                      for b in base.split("-")]
            start = bounds[0]
            # robfig/cron: `5/15` means from 5 to the end of the range, every 15
            end = bounds[-1] if len(bounds) > 1 else (high if step_text else start)
        values.update(range(start, end + 1, step))
    return values, is_open
