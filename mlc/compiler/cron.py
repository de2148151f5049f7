"""How often a cron schedule fires: the shortest gap between two runs, and runs per year.

Schedules are validated by the schema (schema/types.py `cron_problem`); this reads them as
Argo's CronWorkflow and Kubernetes do (Vixie cron: when both day fields are restricted, a
day matches either). The time zone does not change the gaps, so it is ignored.
"""

from __future__ import annotations

import datetime
import functools
import re
from dataclasses import dataclass

from ..schema.types import duration_seconds

_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = {3: "jan feb mar apr may jun jul aug sep oct nov dec".split(),
          4: "sun mon tue wed thu fri sat".split()}
_YEAR = 2025  # a year that is not a leap year; any such year has the same gaps
_YEAR_SECONDS = 365 * 86400


@dataclass(frozen=True)
class Frequency:
    runs_per_year: float
    shortest_gap_seconds: float


@functools.lru_cache(maxsize=1024)  # pure, and a project repeats a few schedules many times
def frequency(expr: str) -> Frequency:
    every = re.fullmatch(r"@every (.+)", expr)
    if every:
        gap = duration_seconds(every.group(1))
        return Frequency(_YEAR_SECONDS / gap, gap)
    fields = _MACROS.get(expr, expr).split()
    sets = [_field(i, part) for i, part in enumerate(fields)]
    minutes, hours, doms, months, dows = sets
    dows = {d % 7 for d in dows}
    dom_any, dow_any = fields[2] in ("*", "?"), fields[4] in ("*", "?")
    times: list[int] = []
    day = datetime.date(_YEAR, 1, 1)
    for n in range(365):
        date = day + datetime.timedelta(days=n)
        if date.month not in months:
            continue
        dom_ok, dow_ok = date.day in doms, (date.weekday() + 1) % 7 in dows
        if dom_any or dow_any:
            matches = dom_ok and dow_ok
        else:
            matches = dom_ok or dow_ok
        if matches:
            base = n * 86400
            times += [base + h * 3600 + m * 60 for h in sorted(hours) for m in sorted(minutes)]
    if not times:
        return Frequency(0.0, float("inf"))
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    gaps.append(times[0] + _YEAR_SECONDS - times[-1])  # the year wraps around
    return Frequency(float(len(times)), float(min(gaps)))


def _field(index: int, part: str) -> set[int]:
    low, high = _RANGES[index]
    names = {n: i + (1 if index == 3 else 0) for i, n in enumerate(_NAMES.get(index, []))}
    out: set[int] = set()
    for item in part.split(","):
        base, _, step = item.partition("/")
        if base in ("*", "?"):
            start, end = low, high
        else:
            bounds = [names.get(b.lower(), None) if not b.isdigit() else int(b)
                      for b in base.split("-")]
            start = bounds[0]
            end = bounds[-1] if len(bounds) > 1 else (high if step else start)
        out.update(range(start, end + 1, int(step) if step else 1))
    return out
