"""Shadow traffic: the primary copies a sampled share of its requests to its shadow.

The copy is made after the client has its answer, and only queued there: `offer` is a hash
and a `put_nowait` on a bounded queue, so the primary's latency does not depend on the
shadow. A few worker tasks send the queued copies; when the shadow falls behind and the
queue is full, new copies are dropped and counted (`mlc_shadow_dropped_total`), never
waited for. Sampling is by the request id's hash, so a client's retry of one request is
mirrored (or not) again.

Each copy carries the client's request id (`x-request-id`), which the shadow writes beside
its logged predictions. The shadow's answer goes no further than here: it is compared row
by row with the primary's own answer and counted as the shadow comparison metrics of the
contract (mlc/metrics.py): agreement, both roles' prediction histograms for a PSI, and the
shadow's latency and errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mlc import metrics as contract

from . import request_id
from .metrics import Histogram, family, label_values
from .mirror_client import MirrorClient, MirrorError
from .settings import MirrorSettings

try:
    from orjson import loads
except ImportError:  # the image installs orjson; a bare environment still works
    from json import loads

log = logging.getLogger("mlc.serve.shadow")

# Copies in flight to the shadow at once: enough to keep up with a shadow as fast as the
# primary, few enough that the copies' work stays a small share of the primary's loop.
WORKERS = 8
# How long a stopping primary waits for queued copies before dropping them.
CLOSE_SECONDS = 5.0
# Copies whose answers are compared together (a scrape compares what is pending first).
COUNT_EVERY = 256
DROP_QUEUE_FULL = "queue_full"
DROP_SHUTDOWN = "shutdown"
TRANSPORT_ERROR = "error"  # the `code` of a copy that got no answer at all


def sampled(rid: str, percent: int) -> bool:
    """Whether the request with id `rid` is mirrored, for `percent` of all ids."""
    if percent >= 100:
        return True
    digest = hashlib.blake2b(rid.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100 < percent


def predictions_of(doc) -> np.ndarray:
    """The predictions in a server's answer, /predict or OIP v2."""
    if isinstance(doc, dict) and "predictions" in doc:
        return np.asarray(doc["predictions"], dtype=np.float64)
    output = doc["outputs"][0]
    return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])


def scores(predictions: np.ndarray) -> np.ndarray:
    """One number per row, as the prediction histogram counts it (mlc.metrics.PREDICTIONS)."""
    return predictions if predictions.ndim == 1 else predictions.max(axis=1)


def agreement(primary: np.ndarray, shadow: np.ndarray, task: str,
              tolerance: float) -> np.ndarray:
    """Per row: does the shadow agree with the primary?

    Classification: the same class (a probability of the positive class is read at 0.5;
    class probabilities by their largest). Regression: at most `tolerance` apart. Answers
    of another shape (the shadow serves a model with other outputs) agree on nothing.
    """
    if primary.shape != shadow.shape:
        return np.zeros(len(primary), dtype=bool)
    if task == "classification":
        if primary.ndim == 1:
            return (primary >= 0.5) == (shadow >= 0.5)
        return primary.argmax(axis=1) == shadow.argmax(axis=1)
    close = np.abs(primary - shadow) <= tolerance
    return close if close.ndim == 1 else close.all(axis=1)


class ShadowStats:
    """The shadow comparison metrics, a collector beside ServeMetrics in its registry.

    Updated on the event loop only (the workers are tasks there), and read by a scrape on
    the same loop: no lock. `task` and `tolerance` say what agreement is (see `agreement`).
    Every family is exported, empty, by servers that mirror nothing, so that each serving
    pod exports the whole serving contract.
    """

    def __init__(self, endpoint: str, task: str = "classification", tolerance: float = 0.0,
                 *, mirroring: bool = False):
        self.endpoint = endpoint
        self.task = task
        self.tolerance = tolerance
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.mirrored = 0
        # a mirroring primary exports its drop counters from 0, so that a query of the
        # dropped share has data before the first drop (and rate() sees the first one)
        self.dropped: dict[str, int] = (dict.fromkeys((DROP_QUEUE_FULL, DROP_SHUTDOWN), 0)
                                        if mirroring else {})
        # ...and so are its answer counters (each code the shadow's server can answer with,
        # and no answer), its answer times and both sides' predictions: a series that
        # appears with the first copies' answers would hide them from rate(), and the
        # shadow gates would not see the first minutes of a shadow phase
        self.responses: dict[str, int] = (
            dict.fromkeys((*contract.SERVE_CODES[contract.PREDICT_ROUTE], TRANSPORT_ERROR), 0)
            if mirroring else {})
        self.mirroring = mirroring
        self.duration = Histogram(contract.SHADOW_DURATION.buckets)
        self.compared = 0
        self.agreed = 0
        self.predictions = {role: Histogram(contract.SHADOW_PREDICTIONS.buckets)
                            for role in ("primary", "shadow")}

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def answered(self, code: str, seconds: float | None) -> None:
        self.responses[code] = self.responses.get(code, 0) + 1
        if seconds is not None:
            self.duration.observe(seconds)

    def compare(self, primary: np.ndarray, shadow: np.ndarray) -> None:
        """Record one copy's two answers; counted with others later (see `_count`)."""
        self._pending.append((primary, shadow))
        if len(self._pending) >= COUNT_EVERY:
            self._count()

    def _count(self) -> None:
        """Compare the pending answers in one vectorised pass per shape: comparing one
        copy at a time would cost the primary's loop as much as sending it."""
        pending, self._pending = self._pending, []
        groups: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}
        for primary, shadow in pending:
            if primary.shape != shadow.shape:  # answers of another shape agree on nothing
                self.compared += len(primary)
                self.predictions["primary"].observe_many(scores(primary).astype(np.float64))
                continue
            groups.setdefault(primary.shape[1:], []).append((primary, shadow))
        for pairs in groups.values():
            primary = np.concatenate([p for p, _ in pairs])
            shadow = np.concatenate([s for _, s in pairs])
            agreed = agreement(primary, shadow, self.task, self.tolerance)
            self.compared += len(agreed)
            self.agreed += int(agreed.sum())
            self.predictions["primary"].observe_many(scores(primary).astype(np.float64))
            self.predictions["shadow"].observe_many(scores(shadow).astype(np.float64))

    def describe(self):
        return []

    def collect(self) -> Iterator:
        self._count()
        e = self.endpoint
        mirrored = family(contract.SHADOW_MIRRORED)
        mirrored.add_metric(label_values(contract.SHADOW_MIRRORED, endpoint=e), self.mirrored)
        yield mirrored
        dropped = family(contract.SHADOW_DROPPED)
        for reason, n in sorted(self.dropped.items()):
            dropped.add_metric(label_values(contract.SHADOW_DROPPED, endpoint=e, reason=reason),
                               n)
        yield dropped
        responses = family(contract.SHADOW_RESPONSES)
        for code, n in sorted(self.responses.items()):
            responses.add_metric(label_values(contract.SHADOW_RESPONSES, endpoint=e, code=code),
                                 n)
        yield responses
        duration = family(contract.SHADOW_DURATION)
        if self.responses:
            duration.add_metric(label_values(contract.SHADOW_DURATION, endpoint=e),
                                self.duration.buckets(), self.duration.total)
        yield duration
        for metric, value in ((contract.SHADOW_COMPARED, self.compared),
                              (contract.SHADOW_AGREED, self.agreed)):
            counter = family(metric)
            counter.add_metric(label_values(metric, endpoint=e), value)
            yield counter
        predictions = family(contract.SHADOW_PREDICTIONS)
        if self.compared or self.mirroring:
            for role, h in sorted(self.predictions.items()):
                predictions.add_metric(label_values(contract.SHADOW_PREDICTIONS, endpoint=e,
                                                    role=role), h.buckets(), h.total)
        yield predictions


@dataclass(frozen=True)
class Copy:
    """One request to send to the shadow, and what the primary answered to it."""

    rid: str
    path: str
    body: bytes
    predictions: np.ndarray


class ShadowMirror:
    def __init__(self, settings: MirrorSettings, stats: ShadowStats):
        self.settings = settings
        self.stats = stats
        self.queue: asyncio.Queue[Copy] = asyncio.Queue(maxsize=settings.max_queue)
        self.closed = False
        self._client = None
        self._workers: list[asyncio.Task] = []

    def offer(self, copy: Copy) -> bool:
        """Queue a copy for the shadow if the request is sampled; never waits."""
        if self.closed or not sampled(copy.rid, self.settings.percent):
            return False
        try:
            self.queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.stats.drop(DROP_QUEUE_FULL)
            return False
        self.stats.mirrored += 1
        return True

    async def start(self) -> None:
        self._client = MirrorClient(self.settings.url, WORKERS, self.settings.timeout_seconds)
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work(slot)) for slot in range(WORKERS)]

    async def _work(self, slot: int) -> None:
        while True:
            copy = await self.queue.get()
            try:
                await self._send(slot, copy)
            except Exception:  # a bug in comparing must not stop the mirror
                log.exception("comparing the shadow's answer failed")
            finally:
                self.queue.task_done()

    async def _send(self, slot: int, copy: Copy) -> None:
        start = time.perf_counter()
        try:
            status, body = await self._client.post(slot, copy.path, copy.body, {
                "content-type": "application/json", request_id.HEADER: copy.rid})
        except (MirrorError, TimeoutError):
            self.stats.answered(TRANSPORT_ERROR, None)
            return
        self.stats.answered(str(status), time.perf_counter() - start)
        if status != 200:
            return
        try:
            shadow = predictions_of(loads(body))
        except (ValueError, KeyError, IndexError, TypeError):
            shadow = np.full(0, np.nan)  # an answer in no known shape agrees on nothing
        self.stats.compare(copy.predictions, shadow)

    async def close(self) -> None:
        """Send what is queued (for a few seconds at most), then stop."""
        self.closed = True
        try:
            await asyncio.wait_for(self.queue.join(), CLOSE_SECONDS)
        except TimeoutError:
            pass
        left = 0
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
            left += 1
        if left:
            self.stats.drop(DROP_SHUTDOWN, left)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._client is not None:
            self._client.close()
