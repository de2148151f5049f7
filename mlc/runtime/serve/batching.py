"""Dynamic batching: one asyncio task gathers requests' rows into model calls.

Requests queue their rows; the batcher takes everything queued (up to `max_batch_size`
rows) and runs the model once, in a worker thread so that the event loop keeps reading and
answering requests meanwhile (or, for a model whose call takes well under a millisecond, on
the event loop itself: handing a call to a thread and back costs more than the call).
While the model runs, the next requests queue up, so under load batches form by themselves
and an idle server answers a lone request at once. The
batcher waits (at most `max_latency` after the oldest queued row) only while a request is
known to be on its way: its handler has started but not yet queued its rows.

The queue is bounded in rows (`max_queue`), and in time (`max_wait`, the endpoint's latency
SLO, `slo.latency` in ml.yaml). Admission: a request is refused at once (the server answers
503 with Retry-After) when it would overflow the queue, or when the time it has already
spent in the server plus the wait it faces would pass the SLO. The wait is measured, not
guessed: what is left of the model call running now, then the calls that the queued rows
and its own make, each at the median time from one call's start to the next's over the last
15 calls made back to back (the call and the event loop's work between calls: what the
queue drains at). A bound in rows alone sheds nothing while many one-row requests wait
seconds each.

Admission is an estimate; the deadline is the guarantee. Every admitted request carries
one, its arrival plus the SLO, and when a batch is formed a request that can no longer be
answered by its deadline (now, plus a slow call, the 90th percentile of the recent ones, and
the loop's work until the next call, is past it) is not computed: it fails with `Expired`
(the server answers 503 with Retry-After) and its place in the batch goes to the next
request; a timer at the oldest request's last moment does the same while the model is busy,
so that a request that will miss its deadline hears so at it. The
deadline also corrects the estimate: while admitted requests expire (the calls run slower
than measured, or the event loop falls behind), admission grants a shrinking share of the
SLO (`headroom`), given back as batches keep their deadlines. A request that found the
model idle has no deadline (its body may have come slowly; nothing of the server's made it
late). A model whose one call takes longer than the SLO has no deadline it can keep; its
requests are computed however late (and admitted when nothing is ahead).

`retry_after()` is how long the work at hand takes to drain, rounded up to whole seconds (at
least 1): what a refused client is told to wait. `close()` stops taking requests and returns
when the queue is empty.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np


class Overloaded(Exception):
    """The queue is full, or would make this request wait past the SLO: come back later."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Expired(Exception):
    """Admitted, but its deadline passed before the model could answer it: not computed."""


# A call's duration is the median of the last this many calls: it follows a lasting
# slowdown within a few batches, and one call stalled by the scheduler (a mean would count
# it several times over) neither refuses what the model could serve nor expires what it
# would have answered in time.
SERVICE_TIME_CALLS = 15
# The deadline check takes a slow call as its estimate, not the median one: the share of
# recent calls (and their cycles) that took longer than it. Admission is an estimate and
# may take the median; a request the median call would answer just in time is late after
# every slower-than-median call, which made some 2% of the answers under a storm come a
# millisecond or two after their deadline.
DEADLINE_QUANTILE = 0.9


# Admission's share of the SLO (`headroom`): a batch that had to expire requests, because
# the calls ran slower than measured or the event loop fell behind, shrinks it by this
# factor; each batch that expired none gives back this much, up to the whole SLO (from the
# floor, some 400 batches: a fraction of a second under load, so that the share settles
# where requests seldom expire instead of swinging back at once).
HEADROOM_CUT = 0.8
HEADROOM_STEP = 0.002
MIN_HEADROOM = 0.2


class Closed(Exception):
    """The server is shutting down and takes no new work."""


class Batcher:
    def __init__(self, run: Callable[[np.ndarray], np.ndarray], *, max_batch_size: int,
                 max_latency: float, max_queue: int, expecting: Callable[[], int] = lambda: 0,
                 executor: Executor | None = None, inline: bool = False,
                 max_wait: float | None = None):
        self._run = run  # rows -> predictions, called in the worker thread
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency
        self.max_queue = max_queue
        self._expecting = expecting
        self.max_wait = max_wait  # the latency SLO: seconds from arrival to answer; None: none
        self.service_time: float | None = None  # recent seconds per model call (median)
        self._durations: deque[float] = deque(maxlen=SERVICE_TIME_CALLS)
        # recent seconds from one call's start to the next's while the queue stays full
        # (median): a call plus what the event loop does between calls, which is what a
        # queue drains at; None until measured (then the call's duration stands in)
        self.cycle_time: float | None = None
        self._cycles: deque[float] = deque(maxlen=SERVICE_TIME_CALLS)
        self._back_to_back = False  # the queue held more when the last batch was taken
        self._running = False
        self._started = 0.0  # perf_counter() when the running call began
        self.shed = 0  # requests refused as overload (full queue or expected wait)
        self.expired = 0  # requests admitted but not computed: their deadline passed
        self.headroom = 1.0  # the share of the SLO that admission grants (HEADROOM_CUT)
        self._expiring = False  # a request expired since the last batch was formed
        self.inline = inline  # run the model on the event loop (tiny models: no hand-off)
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="model")
        # rows, future, loop.time() when queued, deadline (perf_counter() seconds)
        self._pending: deque[tuple[np.ndarray, asyncio.Future, float, float]] = deque()
        self.queued = 0  # rows waiting (not counting the batch being computed)
        self._wakeup: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._sweep: asyncio.TimerHandle | None = None  # the next look for expired requests
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def submit(self, rows: np.ndarray, arrived: float | None = None) -> np.ndarray:
        """Predictions for `rows`, computed in some batch; raises Overloaded, Expired or
        Closed. `arrived`: when the request reached the server (perf_counter() seconds;
        default now), from which its wait and its deadline count."""
        if self._closing:
            raise Closed()
        now = time.perf_counter()
        arrived = now if arrived is None else arrived
        n = len(rows)
        reason = self.refusal(n, waited=now - arrived)
        if reason is not None:
            self.shed += 1
            raise Overloaded(reason)
        if self.inline and n >= self.max_batch_size and not self._pending:
            return self._run(rows)  # a full batch on its own: no queue, no task switches
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        # a request that finds the model idle is computed however late it is (its body may
        # have come slowly): only work queued behind other work has a deadline to keep
        behind = self.queued or self._running
        deadline = arrived + self.max_wait if self.max_wait is not None and behind else math.inf
        self._pending.append((rows, future, loop.time(), deadline))
        self.queued += n
        if self._sweep is None and deadline != math.inf:
            self._arm_sweep()
        self._wake()
        return await future

    def refusal(self, rows: int, ahead: int = 0, waited: float = 0.0) -> str | None:
        """Why `rows` more rows would be refused now, or None. `ahead`: requests whose rows
        are on their way (bodies being read), a row each at least, which will queue first.
        `waited`: seconds the request has already spent in the server. The server asks with
        one row before it reads a body, and again with the body's rows in `submit`."""
        if self.queued + ahead + rows > self.max_queue:
            return (f"{self.queued} rows already queued, {ahead} requests on their way "
                    f"(at most {self.max_queue} rows)")
        # Only a model with work at hand refuses on the expected wait. A request with nothing
        # ahead of it is never refused, even by a model whose one call takes longer than the
        # SLO: shedding it would only turn latency into errors. And an idle model admits
        # however many bodies are on their way: the service time is measured only by calls
        # that run, so a model that refused while idle would keep a storm's inflated estimate
        # and refuse every later request, the storm long over.
        if self.max_wait is None or not (self.queued or self._running):
            return None
        wait = self.expected_wait(rows + ahead)
        if waited + wait > self.max_wait * self.headroom:
            return (f"waited {waited:.3f}s, expected wait {wait:.3f}s: over the latency SLO "
                    f"({self.max_wait:g}s" + (f", {self.headroom:.0%} of it while requests "
                                             f"expire" if self.headroom < 1 else "") + ")")
        return None

    def expected_wait(self, rows: int) -> float:
        """Seconds until `rows` more rows would be answered: what is left of the call running
        now, then the calls the queue and these rows make, each at the recent time from one
        call's start to the next's (the call, and the event loop's work between calls)."""
        service = self.service_time
        if service is None:
            return 0.0  # nothing measured yet: no grounds to refuse
        calls = math.ceil((self.queued + rows) / self.max_batch_size)
        return self._left_of_running(service) + calls * (self.cycle_time or service)

    def drain_time(self) -> float:
        """Seconds until the work at hand (the running call and the queue) is done."""
        service = self.service_time
        if service is None:
            return 0.0
        return (self._left_of_running(service)
                + math.ceil(self.queued / self.max_batch_size) * (self.cycle_time or service))

    def retry_after(self) -> int:
        """Whole seconds a refused client should wait: the drain time, rounded up, at least
        1 (Retry-After counts whole seconds)."""
        return max(1, math.ceil(self.drain_time()))

    def _left_of_running(self, service: float) -> float:
        if not self._running:
            return 0.0
        return max(service - (time.perf_counter() - self._started), 0.0)

    def _observe(self, seconds: float) -> None:
        self._durations.append(seconds)
        recent = sorted(self._durations)
        self.service_time = recent[len(recent) // 2]

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def close(self) -> None:
        """Finish every queued request, then stop."""
        self._closing = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._wake()
        if self._task is not None:
            await self._task
        if isinstance(self._executor, ThreadPoolExecutor):
            self._executor.shutdown(wait=True)

    async def _sleep_until_woken(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._wakeup = loop.create_future()
        handle = loop.call_later(timeout, self._wake) if timeout is not None else None
        try:
            await waiter
        finally:
            if handle is not None:
                handle.cancel()
            self._wakeup = None

    def _keeps_deadlines(self) -> float | None:
        """The duration of a call, when this model can keep deadlines at all (module
        docstring); else None."""
        service = self.service_time
        return (service if service is not None and self.max_wait is not None
                and service < self.max_wait else None)

    def _slow_cycle(self) -> float:
        """What the deadline check counts for a call and the loop's work until the next
        one: DEADLINE_QUANTILE of the recent calls' durations and cycles."""
        return max(_quantile(self._durations), _quantile(self._cycles))

    def _arm_sweep(self) -> None:
        """Look again when the oldest queued request can no longer be answered in time: an
        expired request is answered then, not when the model is free to reach it (while a
        long call runs, the event loop is free to tell those waiting behind it)."""
        service = self._keeps_deadlines()
        if service is None or not self._pending or self._pending[0][3] == math.inf:
            return
        delay = self._pending[0][3] - self._slow_cycle() - time.perf_counter()
        self._sweep = asyncio.get_running_loop().call_later(max(delay, 0.001), self._expire)

    def _expire(self) -> None:
        self._sweep = None
        service = self._keeps_deadlines()
        if service is not None:
            latest = time.perf_counter() + self._slow_cycle()
            while self._pending and (self._pending[0][1].done()
                                     or latest > self._pending[0][3]):
                rows, future, _, _ = self._pending.popleft()
                self.queued -= len(rows)
                if not future.done():
                    self._expire_one(future)
        self._arm_sweep()

    def _expire_one(self, future: asyncio.Future) -> None:
        """Fail an admitted request past its deadline, and admit less for a while."""
        self.expired += 1
        future.set_exception(Expired())
        if not self._expiring:  # once between two batches, however many expire at once
            self._expiring = True
            self.headroom = max(MIN_HEADROOM, self.headroom * HEADROOM_CUT)

    def _take_batch(self) -> list[tuple[np.ndarray, asyncio.Future, float, float]]:
        """The next batch off the queue, up to `max_batch_size` rows (or one request, however
        many rows it has), leaving out clients that left and failing, with Expired, the
        requests whose deadline the call would pass."""
        service = self._keeps_deadlines()
        # past this perf_counter() reading, a call started now is answered after a request's
        # deadline (the call and the loop's work until the next one, where answers are
        # written); a model slower than the SLO keeps no deadline (the module docstring)
        latest = (time.perf_counter() + self._slow_cycle()
                  if service is not None else -math.inf)
        batch: list = []
        rows = 0
        while self._pending:
            part = self._pending[0]
            n = len(part[0])
            if batch and rows + n > self.max_batch_size:
                break
            self._pending.popleft()
            self.queued -= n
            future = part[1]
            if future.done():  # the client left
                continue
            if latest > part[3]:
                self._expire_one(future)
                continue
            batch.append(part)
            rows += n
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                await self._sleep_until_woken(None)
                continue
            deadline = self._pending[0][2] + self.max_latency
            while (self.queued < self.max_batch_size and self._expecting() > 0
                   and not self._closing and loop.time() < deadline):
                await self._sleep_until_woken(deadline - loop.time())
            batch = self._take_batch()
            # admission's headroom follows what the deadlines say of its estimates
            if self._expiring:
                self._expiring = False
            elif batch and self.headroom < 1.0:
                self.headroom = min(1.0, self.headroom + HEADROOM_STEP)
            if not batch:
                continue
            inputs = batch[0][0] if len(batch) == 1 else np.concatenate([b[0] for b in batch])
            started = time.perf_counter()
            if self._back_to_back:
                self._cycles.append(started - self._started)
                recent = sorted(self._cycles)
                self.cycle_time = recent[len(recent) // 2]
            self._started = started
            self._back_to_back = bool(self._pending)
            self._running = True
            try:
                if self.inline:
                    outputs = self._run(inputs)
                else:
                    outputs = await loop.run_in_executor(self._executor, self._run, inputs)
            except Exception as exc:  # the model failed: every request in the batch hears it
                for _, future, _, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self._running = False
                self._observe(time.perf_counter() - started)
            start = 0
            for part, future, _, _ in batch:
                end = start + len(part)
                if not future.done():
                    future.set_result(outputs[start:end])
                start = end
            if self.inline:
                await asyncio.sleep(0)  # let these answers go out before the next batch


def _quantile(values: deque[float]) -> float:
    """DEADLINE_QUANTILE of `values` (the nearest rank); 0 when there are none."""
    if not values:
        return 0.0
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, int(len(ranked) * DEADLINE_QUANTILE))]
