"""Requests and responses by event id, until both halves are in.

KServe's agent posts a request's event before it forwards the request and the response's
after the answer, from separate workers: either may arrive first, twice (the agent does not
retry, but a proxy may), or never (the engine failed, the agent's queue was full). Memory is
bounded by `max_pending` halves and `max_bytes` of their bodies, the oldest dropped first,
and by `timeout_seconds`, after
which a half alone is dropped; both are counted as expired. An id already paired is kept
in a bounded set of recent ids, so that a duplicate half is counted, not logged twice.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from .cloudevents import Event


@dataclass(frozen=True)
class Pair:
    request: Event
    response: Event


class Pairing:
    def __init__(self, max_pending: int, timeout_seconds: float, max_bytes: int,
                 clock=time.monotonic):
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.bytes = 0  # of the pending halves' bodies
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._pending: OrderedDict[str, tuple[float, Event]] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()  # recently paired ids
        self.expired = 0
        self.duplicates = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, event: Event) -> Pair | None:
        """The pair `event` completes, or None (kept waiting, or a duplicate)."""
        now = self._clock()
        self.expire(now)
        if event.id in self._done:
            self.duplicates += 1
            return None
        waiting = self._pending.get(event.id)
        if waiting is not None:
            other = waiting[1]
            if other.kind == event.kind:  # the same half again: keep the first
                self.duplicates += 1
                return None
            del self._pending[event.id]
            self.bytes -= len(other.body)
            self._done[event.id] = None
            while len(self._done) > self.max_pending:
                self._done.popitem(last=False)
            return (Pair(other, event) if other.kind == "request" else Pair(event, other))
        self._pending[event.id] = (now, event)
        self.bytes += len(event.body)
        while len(self._pending) > self.max_pending or self.bytes > self.max_bytes:
            self._drop_oldest()
        return None

    def _drop_oldest(self) -> None:
        _, (_, dropped) = self._pending.popitem(last=False)
        self.bytes -= len(dropped.body)
        self.expired += 1

    def expire(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        while self._pending:
            arrived, _ = next(iter(self._pending.values()))
            if now - arrived < self.timeout_seconds:
                break
            self._drop_oldest()
