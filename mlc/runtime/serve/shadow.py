"""Shadow traffic: the primary hands a sampled share of its requests to its mirror sender.

The copy is made after the client has its answer, and only handed over there: `offer` is a
hash (below 100 %) and one non-blocking `sendmsg` of the request id, the shadow's path, the
request body and the primary's own answer on a Unix SOCK_SEQPACKET socket pair. Everything
else a copy costs (the HTTP request to the shadow, reading its answer, parsing both answers,
comparing them, counting) happens in the mirror sender, a second process that the primary
starts, supervises and drains (mirror_sender.py): its CPU and its GIL are not the ones
that answer the primary's clients. A hand-over that would block (the sender is behind and
the socket's buffer is full) or a copy larger than the socket takes is dropped and counted
(`mlc_shadow_dropped_total`, by reason), never waited for. Sampling is by the request id's
hash, so a client's retry of one request is mirrored (or not) again.

Each copy carries the client's request id (`x-request-id`), which the shadow writes beside
its logged predictions. The comparison (agreement, both roles' prediction histograms for a
PSI, the shadow's latency and answer codes) is counted by the sender into memory shared
with the primary (mirror_counts.py) and exported here, on the primary's /metrics, under the
names and labels of the contract (mlc/metrics.py) that the gates, rules and dashboards read.

A sender that dies is started again (after 0.5 s, doubling to 30 s while it keeps dying
young) and counted (`mlc_shadow_sender_restarts_total`); the copies it had taken and not
finished are dropped and counted (`sender_exit`); those still in the socket go to the next
one. The primary keeps serving throughout: it never waits for the sender.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hashlib
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator

import numpy as np

from mlc import metrics as contract

from . import mirror_counts as mc
from .metrics import family, label_values
from .mirror_compare import agreement, predictions_of, scores
from .mirror_sender import CLOSE_SECONDS, HEADER, WORKERS
from .settings import MirrorSettings

__all__ = ["ShadowMirror", "ShadowStats", "agreement", "predictions_of", "replace_mirror",
           "sampled", "scores", "WORKERS"]

log = logging.getLogger("mlc.serve.shadow")

DROP_QUEUE_FULL = "queue_full"  # the sender is behind: its queue and the socket are full
DROP_TOO_LARGE = "too_large"  # a copy larger than one message on the socket may be
DROP_SENDER_EXIT = "sender_exit"  # taken by a sender that died before it was answered
DROP_SHUTDOWN = "shutdown"  # still waiting when the primary stopped
DROP_REASONS = (DROP_QUEUE_FULL, DROP_SENDER_EXIT, DROP_SHUTDOWN, DROP_TOO_LARGE)
TRANSPORT_ERROR = "error"  # the `code` of a copy that got no answer at all
# The socket's send buffer: copies that wait for a busy sender (the kernel caps it at
# net.core.wmem_max). A message may take a quarter of it, so that one large copy does not
# block the hand-over for the small ones behind it.
HANDOVER_BUFFER_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024
START_SECONDS = 10.0  # a sender not ready by then is killed at shutdown, not drained
RESTART_FIRST_SECONDS = 0.5
RESTART_MAX_SECONDS = 30.0
RESTART_RESET_AFTER = 60.0  # a sender that ran this long died of something new: retry soon
SENDER_MODULE = "mlc.runtime.serve.mirror_sender"
# How the sender shares the CPU with the primary (mirror_sender.yield_cpu): `idle`
# (SCHED_IDLE: only CPU time nothing else of the pod wants; the default), `nice` (niceness
# 10) or `normal`, from this environment variable. `normal` is for a machine that is busy
# by design, such as a test run that counts every copy.
SCHEDULING_ENV = "MLC_MIRROR_SENDER_SCHEDULING"
SCHEDULING = ("idle", "nice", "normal")


def sampled(rid: str, percent: int) -> bool:
    """Whether the request with id `rid` is mirrored, for `percent` of all ids."""
    if percent >= 100:
        return True
    digest = hashlib.blake2b(rid.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100 < percent


class ShadowStats:
    """The shadow comparison metrics, a collector beside ServeMetrics in its registry.

    What the primary counts itself (copies handed over, hand-overs dropped, sender restarts)
    is kept here; what the sender counts is read from the shared counts at each scrape.
    `task` and `tolerance` say what agreement is (mirror_compare.agreement). Every family
    is exported, empty, by servers that mirror nothing, so that each serving pod exports
    the whole serving contract.
    """

    def __init__(self, endpoint: str, task: str = "classification", tolerance: float = 0.0,
                 *, mirroring: bool = False):
        self.endpoint = endpoint
        self.task = task
        self.tolerance = tolerance
        self.mirroring = mirroring
        self.counts = mc.SharedCounts() if mirroring else None
        self.mirrored = 0
        self.restarts = 0
        # a mirroring primary exports its drop counters from 0, so that a query of the
        # dropped share has data before the first drop (and rate() sees the first one)
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

    def start_mirroring(self, settings: MirrorSettings) -> None:
        """A primary given a mirror while it runs (config_reload.py): every comparison
        series from 0 from now on, as if it had started with it. The counts are kept when
        the mirror goes again: a counter never goes back."""
        self.task, self.tolerance, self.mirroring = settings.task, settings.tolerance, True
        if self.counts is None:
            self.counts = mc.SharedCounts()

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def sender_died(self, vanished: int = 0) -> None:
        """`vanished`: copies the dead sender had taken from the socket and not yet counted
        as received (killed between the two), found by the mirror (ShadowMirror._vanished)."""
        self.restarts += 1
        self.drop(DROP_SENDER_EXIT, self.counts.writer_gone() + vanished)

    def describe(self):
        return []

    def collect(self) -> Iterator:
        e = self.endpoint
        a = self.counts.snapshot() if self.counts is not None else None
        mirrored = family(contract.SHADOW_MIRRORED)
        mirrored.add_metric(label_values(contract.SHADOW_MIRRORED, endpoint=e), self.mirrored)
        yield mirrored
        dropped = family(contract.SHADOW_DROPPED)
        restarts = family(contract.SHADOW_SENDER_RESTARTS)
        responses = family(contract.SHADOW_RESPONSES)
        duration = family(contract.SHADOW_DURATION)
        predictions = family(contract.SHADOW_PREDICTIONS)
        if a is not None:
            by_reason = {**self.dropped}
            by_reason[DROP_QUEUE_FULL] += int(a[mc.DROPPED_QUEUE_FULL])
            by_reason[DROP_SHUTDOWN] += int(a[mc.DROPPED_SHUTDOWN])
            for reason, n in sorted(by_reason.items()):
                dropped.add_metric(label_values(contract.SHADOW_DROPPED, endpoint=e,
                                                reason=reason), n)
            restarts.add_metric(label_values(contract.SHADOW_SENDER_RESTARTS, endpoint=e),
                                self.restarts)
            # each code the shadow's server can answer with, and no answer, from 0: a series
            # that appears with the first copies' answers would hide them from rate(), and
            # the shadow gates would not see the first minutes of a shadow phase
            codes = a[mc.RESPONSES:mc.RESPONSES + mc.CODES]
            shown = {*contract.SERVE_CODES[contract.PREDICT_ROUTE],
                     *(str(c) for c in np.flatnonzero(codes) if c)}
            for code in sorted(shown | {TRANSPORT_ERROR}):
                n = codes[0 if code == TRANSPORT_ERROR else int(code)]
                responses.add_metric(label_values(contract.SHADOW_RESPONSES, endpoint=e,
                                                  code=code), float(n))
            duration.add_metric(label_values(contract.SHADOW_DURATION, endpoint=e),
                                _buckets(mc.DURATION_BOUNDS, a[mc.DURATION:mc.PRIMARY]),
                                float(a[mc.DURATION_SUM]))
            for role, at, total in (("primary", mc.PRIMARY, mc.PRIMARY_SUM),
                                    ("shadow", mc.SHADOW, mc.SHADOW_SUM)):
                counts = a[at:at + len(mc.PREDICTION_BOUNDS) + 1]
                predictions.add_metric(label_values(contract.SHADOW_PREDICTIONS, endpoint=e,
                                                    role=role),
                                       _buckets(mc.PREDICTION_BOUNDS, counts), float(a[total]))
        yield dropped
        yield restarts
        yield responses
        yield duration
        for metric, at in ((contract.SHADOW_COMPARED, mc.COMPARED),
                           (contract.SHADOW_AGREED, mc.AGREED)):
            counter = family(metric)
            counter.add_metric(label_values(metric, endpoint=e),
                               float(a[at]) if a is not None else 0)
            yield counter
        yield predictions


def _buckets(bounds: np.ndarray, counts: np.ndarray) -> list[tuple[str, float]]:
    les = ["+Inf" if np.isinf(b) else repr(float(b)) for b in bounds] + ["+Inf"]
    return list(zip(les, np.cumsum(counts).tolist(), strict=True))


class ShadowMirror:
    """The primary's side: the hand-over socket and the supervised sender process."""

    def __init__(self, settings: MirrorSettings, stats: ShadowStats,
                 handover_bytes: int = HANDOVER_BUFFER_BYTES,
                 close_seconds: float = CLOSE_SECONDS):
        self.settings = settings
        self.close_seconds = close_seconds
        self.scheduling = os.environ.get(SCHEDULING_ENV) or SCHEDULING[0]
        if self.scheduling not in SCHEDULING:
            raise ValueError(f"{SCHEDULING_ENV} must be one of {', '.join(SCHEDULING)}: "
                             f"{self.scheduling!r}")
        self.stats = stats
        self.closed = False
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, handover_bytes)
        self._ours.setblocking(False)
        buffer = self._ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.max_message = min(MAX_MESSAGE_BYTES, buffer // 4)
        self._send = self._ours.sendmsg
        self._pack = HEADER.pack
        # for the count of what a killed sender took with it (_vanished): the copies handed
        # over by this mirror, the sender's `received` count when it began, and what was
        # found lost that way before
        self._handed = 0
        self._received_before = int(stats.counts.array[mc.RECEIVED]) if stats.counts else 0
        self._lost_between = 0
        self.process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task | None = None
        self._started = asyncio.Event()

    def offer(self, rid: str, path: bytes, body: bytes, answer: bytes) -> bool:
        """Hand a copy to the sender if the request is sampled; never waits.

        `path` is the shadow's route (ASCII), `answer` the primary's answer as sent."""
        if self.closed or (self.settings.percent < 100 and not sampled(rid, self.settings.percent)):
            return False
        rid_bytes = rid.encode("ascii")
        if HEADER.size + len(rid_bytes) + len(path) + len(body) + len(answer) > self.max_message:
            self.stats.drop(DROP_TOO_LARGE)
            return False
        try:
            self._send([self._pack(len(rid_bytes), len(path), len(body)), rid_bytes, path, body,
                        answer])
        except BlockingIOError:
            self.stats.drop(DROP_QUEUE_FULL)
            return False
        except OSError as exc:  # EMSGSIZE: the kernel's own limit is lower than ours
            self.stats.drop(DROP_TOO_LARGE if exc.errno == errno.EMSGSIZE else DROP_QUEUE_FULL)
            return False
        self.stats.mirrored += 1
        self._handed += 1
        return True

    def _vanished(self) -> int:
        """While no sender runs (the primary's event loop is the only one touching the
        socket and the counts): the copies handed over that neither a sender counted as
        received nor the socket still holds. A sender killed after taking a message from the
        socket and before counting it leaves one. The socket's messages are read and put
        back in their order; one that no longer fits is counted here as lost too."""
        held: list[bytes] = []
        self._theirs.setblocking(False)
        while True:
            try:
                message = self._theirs.recv(MAX_MESSAGE_BYTES)
            except OSError:
                break
            if not message:
                break
            held.append(message)
        requeued = 0
        for message in held:
            try:
                self._ours.send(message)
            except OSError:
                break
            requeued += 1
        received = int(self.stats.counts.array[mc.RECEIVED]) - self._received_before
        lost = self._handed - received - requeued - self._lost_between
        self._lost_between += lost
        return max(lost, 0)

    async def start(self) -> None:
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        await self._started.wait()

    def _command(self) -> list[str]:
        s = self.settings
        config = {"url": s.url, "task": s.task, "tolerance": s.tolerance,
                  "max_queue": s.max_queue, "timeout_seconds": s.timeout_seconds,
                  "max_message": self.max_message, "close_seconds": self.close_seconds,
                  "scheduling": self.scheduling}
        return [sys.executable, "-m", SENDER_MODULE, str(self._theirs.fileno()),
                str(self.stats.counts.fd), json.dumps(config)]

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_FIRST_SECONDS
        while not self.closed:
            began = loop.time()
            try:
                self.process = await asyncio.create_subprocess_exec(
                    *self._command(), stdin=asyncio.subprocess.DEVNULL,
                    pass_fds=(self._theirs.fileno(), self.stats.counts.fd))
            except OSError:
                log.exception("the mirror sender did not start")
            else:
                self._started.set()
                code = await self.process.wait()
                if self.closed:
                    return
                self.stats.sender_died(self._vanished())
                log.error("the mirror sender exited (%s); starting another in %.1fs", code,
                          delay)
            self._started.set()
            if loop.time() - began > RESTART_RESET_AFTER:
                delay = RESTART_FIRST_SECONDS
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_SECONDS)

    async def _ready(self, process: asyncio.subprocess.Process) -> None:
        """Until the sender would drain on SIGTERM, or has exited."""
        while self.stats.counts.array[mc.READY] != process.pid and process.returncode is None:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop handing over; the sender sends what it holds (`close_seconds` at most) and
        exits. One that does not is killed, and what it held counted as `shutdown`."""
        self.closed = True
        self._ours.close()
        process = self.process
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(self._ready(process), START_SECONDS)
                process.terminate()  # drain: send what was handed over, then exit
                await asyncio.wait_for(process.wait(), self.close_seconds + 5.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        # 0 from a sender that drained; what one that was killed (or never ran) left
        lost = self.stats.counts.writer_gone() + _unread(self._theirs)
        self.stats.drop(DROP_SHUTDOWN, lost)
        self._theirs.close()


async def replace_mirror(mirror: ShadowMirror | None, settings: MirrorSettings | None,
                         stats: ShadowStats) -> ShadowMirror | None:
    """The mirror for `settings` (None: none), in place of `mirror`.

    A change of the share alone is taken at once, by the running sender. Any other change
    drains the running sender (what it holds is sent, `close_seconds` at most, as at
    shutdown) before the next one starts: the shared counts have one writer at a time.
    Requests answered meanwhile are not copied, and not counted as dropped."""
    if mirror is not None and mirror.closed:  # closed by a change whose next start failed
        mirror = None
    if mirror is not None and settings is not None and mirror.settings == dataclasses.replace(
            settings, percent=mirror.settings.percent):
        mirror.settings = settings
        return mirror
    if mirror is not None:
        await mirror.close()
    if settings is None:
        return None
    stats.start_mirroring(settings)
    mirror = ShadowMirror(settings, stats)
    await mirror.start()
    return mirror


def _unread(sock: socket.socket) -> int:
    """Messages still in the sender's end of the socket, read and thrown away."""
    sock.setblocking(False)
    n = 0
    while True:
        try:
            if not sock.recv(MAX_MESSAGE_BYTES):
                return n
        except OSError:
            return n
        n += 1
