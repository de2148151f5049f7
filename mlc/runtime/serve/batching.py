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
SLO): a request that would overflow it, or whose expected wait (the model calls queued
ahead of it, each taking about as long as recent calls took) would pass the SLO, is refused
at once (the server answers 503 with Retry-After) rather than queued behind work it cannot
finish in time. A bound in rows alone sheds nothing while many one-row requests wait
seconds each. `close()` stops taking requests and returns when the queue is empty.
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


# How much the newest model call moves the estimate of a call's duration: about the last
# ten calls count, so the estimate follows a slowdown within a few batches.
SERVICE_TIME_WEIGHT = 0.2


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
        self.max_wait = max_wait  # seconds a request may expect to wait; None: unbounded
        self.service_time: float | None = None  # recent seconds per model call (moving mean)
        self._running = False
        self.shed = 0  # requests refused as overload (full queue or expected wait)
        self.inline = inline  # run the model on the event loop (tiny models: no hand-off)
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="model")
        self._pending: deque[tuple[np.ndarray, asyncio.Future, float]] = deque()
        self.queued = 0  # rows waiting (not counting the batch being computed)
        self._wakeup: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        """Predictions for `rows`, computed in some batch; raises Overloaded or Closed."""
        if self._closing:
            raise Closed()
        n = len(rows)
        reason = self.refusal(n)
        if reason is not None:
            self.shed += 1
            raise Overloaded(reason)
        if self.inline and n >= self.max_batch_size and not self._pending:
            return self._run(rows)  # a full batch on its own: no queue, no task switches
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((rows, future, loop.time()))
        self.queued += n
        self._wake()
        return await future

    def refusal(self, rows: int, ahead: int = 0) -> str | None:
        """Why `rows` more rows would be refused now, or None. `ahead`: requests whose rows
        are on their way (bodies being read), a row each at least, which will queue first.
        The server asks with one row before it reads a body, and again with the body's rows
        in `submit`."""
        if self.queued + ahead + rows > self.max_queue:
            return (f"{self.queued} rows already queued, {ahead} requests on their way "
                    f"(at most {self.max_queue} rows)")
        wait = self.expected_wait(rows + ahead)
        # Only a model with work at hand refuses on the expected wait. A request with nothing
        # ahead of it is never refused, even by a model whose one call takes longer than the
        # SLO: shedding it would only turn latency into errors. And an idle model admits
        # however many bodies are on their way: the service time is measured only by calls
        # that run, so a model that refused while idle would keep a storm's inflated estimate
        # and refuse every later request, the storm long over.
        if (self.max_wait is not None and wait > self.max_wait
                and (self.queued or self._running)):
            return f"expected wait {wait:.3f}s is over the latency SLO ({self.max_wait:g}s)"
        return None

    def expected_wait(self, rows: int) -> float:
        """Seconds until `rows` more rows would be answered: the call running now, then the
        calls the queue and these rows make, at the recent duration of a call."""
        if self.service_time is None:
            return 0.0  # nothing measured yet: no grounds to refuse
        calls = math.ceil((self.queued + rows) / self.max_batch_size) + self._running
        return calls * self.service_time

    def _observe(self, seconds: float) -> None:
        old = self.service_time
        self.service_time = seconds if old is None else (
            old + SERVICE_TIME_WEIGHT * (seconds - old))

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def close(self) -> None:
        """Finish every queued request, then stop."""
        self._closing = True
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
            batch = [self._pending.popleft()]
            rows = len(batch[0][0])
            while self._pending and rows + len(self._pending[0][0]) <= self.max_batch_size:
                item = self._pending.popleft()
                batch.append(item)
                rows += len(item[0])
            self.queued -= rows
            batch = [item for item in batch if not item[1].done()]  # clients that left
            if not batch:
                continue
            inputs = batch[0][0] if len(batch) == 1 else np.concatenate([b[0] for b in batch])
            started = time.perf_counter()
            self._running = True
            try:
                if self.inline:
                    outputs = self._run(inputs)
                else:
                    outputs = await loop.run_in_executor(self._executor, self._run, inputs)
            except Exception as exc:  # the model failed: every request in the batch hears it
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self._running = False
                self._observe(time.perf_counter() - started)
            start = 0
            for part, future, _ in batch:
                end = start + len(part)
                if not future.done():
                    future.set_result(outputs[start:end])
                start = end
            if self.inline:
                await asyncio.sleep(0)  # let these answers go out before the next batch
