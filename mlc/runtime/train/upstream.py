"""The `wait-for-upstream` step: wait until the sources a dbt model or Airflow task produces
are fresh, then let the pipeline go on (mlc/compiler/resolve/upstream.py).

Fresh means what `checks.maxStaleness` says: the newest event time is at most that old. The
step looks every `interval`; past `timeout` it fails with exit code 10 (bad data: nothing is
trained), naming each source still stale and who produces it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import pyarrow.compute as pc

from mlc.compiler import ir
from mlc.runtime import sources
from mlc.runtime.step import EXIT_BAD_DATA, StepContext, StepFailed
from mlc.runtime.train.validation import sources_of


def _waited(ctx: StepContext) -> list[ir.Source]:
    out = []
    for name in sources_of(ctx.model, ctx.project):
        source = ctx.project.sources[name]
        if source.produced_by and source.produced_by.wait_timeout_seconds is not None:
            out.append(source)
    return out


def newest(ctx: StepContext, source: ir.Source) -> dt.datetime | None:
    """The newest event time of the source, in UTC; None when it has no rows (or no file
    yet: the producer has not written it)."""
    try:
        table = sources.read(ctx, source, columns=[source.timestamp_field])
    except StepFailed:
        return None
    if table.num_rows == 0:
        return None
    value = pc.max(table[source.timestamp_field]).as_py()
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def stale(ctx: StepContext, source: ir.Source, now: dt.datetime) -> str | None:
    """Why the source is not fresh yet, or None when it is."""
    found = newest(ctx, source)
    limit = source.max_staleness_seconds or 0
    if found is not None and (now - found).total_seconds() <= limit:
        return None
    up = source.produced_by
    seen = f"newest {source.timestamp_field} {found.isoformat()}" if found else "no rows yet"
    return (f"source {source.name} (produced by {up.tool} {up.job}): {seen}; at most "
            f"{limit}s old wanted (checks.maxStaleness)")


def wait(ctx: StepContext, *, clock: Callable[[], dt.datetime] | None = None,
         sleep: Callable[[float], None] = time.sleep) -> None:
    clock = clock or (lambda: dt.datetime.now(dt.UTC))
    waited = _waited(ctx)
    if not waited:
        print("no source waits for its producer")
        return
    timeout = max(s.produced_by.wait_timeout_seconds or 0 for s in waited)
    interval = min(s.produced_by.wait_interval_seconds or 60 for s in waited)
    start = clock()
    while True:
        now = clock()
        reasons = [r for s in waited if (r := stale(ctx, s, now))]
        if not reasons:
            print("fresh: " + ", ".join(s.name for s in waited))
            return
        if (now - start).total_seconds() >= timeout:
            raise StepFailed(f"upstream data is still not fresh after {timeout}s; nothing "
                             "was trained\n" + "\n".join(f"  {r}" for r in reasons),
                             EXIT_BAD_DATA)
        print("waiting: " + "; ".join(reasons), flush=True)
        sleep(interval)
