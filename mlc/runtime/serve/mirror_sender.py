"""The mirror sender: the process beside a primary that sends its copies to the shadow.

    python -m mlc.runtime.serve.mirror_sender SOCKET_FD COUNTS_FD SETTINGS_JSON

Started and supervised by the primary (shadow.ShadowMirror), never by hand: the primary
hands each sampled request over with one non-blocking send on a Unix SOCK_SEQPACKET socket
pair (one message per copy, whole or not at all) and goes back to serving. This process
reads the messages, sends each to the shadow with mlc's keep-alive client (mirror_client.py),
compares the shadow's answer with the primary's (mirror_compare.py) and counts both into
the memory the primary exports from (mirror_counts.py). Its CPU and its GIL are its own, so
what a copy costs here is not taken from the primary's clients.

Bounded: at most `max_queue` copies wait here; past that this process stops reading, the
socket's buffer fills and the primary drops (and counts) what it cannot hand over.

When the primary stops (it closes its end of the socket and sends SIGTERM) or dies (the
socket reaches its end), the copies already handed over are sent for up to CLOSE_SECONDS;
what is left then is counted as dropped (`shutdown`), and it exits 0. It ignores SIGINT,
which a terminal sends to the whole process group: the primary drains it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import struct
import sys
import time

from . import mirror_counts as mc
from . import request_id
from .mirror_client import MirrorClient, MirrorError
from .mirror_compare import TRANSPORT_ERROR, Comparison

log = logging.getLogger("mlc.serve.mirror")

# One copy: the lengths of the request id, the shadow's path and the request body, then the
# three, then the primary's answer (the rest of the message).
HEADER = struct.Struct("<HHI")
# Copies in flight to the shadow at once: enough to keep up with a shadow as fast as the
# primary.
WORKERS = 8
# How long a draining sender keeps sending what was handed over before dropping it.
CLOSE_SECONDS = 5.0
# How often finished copies are counted when fewer than a batch are waiting: soon enough
# that a scrape a moment after the last copy sees it.
FLUSH_SECONDS = 0.05
# Where SCHED_IDLE is missing, the sender's niceness (raising it needs no privilege): at 10
# it gets about a tenth of a contended CPU. SCHED_IDLE (Linux, no privilege needed either)
# is stronger: the sender runs on CPU time no other task of the pod wants, and never
# preempts the primary when a copy wakes it.
NICENESS = 10


def unpack(message: bytes) -> tuple[str, str, bytes, bytes]:
    """(request id, path, request body, the primary's answer) of one handed-over copy."""
    rid_len, path_len, body_len = HEADER.unpack_from(message)
    at = HEADER.size
    rid = message[at:at + rid_len].decode("ascii")
    at += rid_len
    path = message[at:at + path_len].decode("ascii")
    at += path_len
    return rid, path, message[at:at + body_len], message[at + body_len:]


class Sender:
    def __init__(self, sock: socket.socket, counts: mc.SharedCounts, settings: dict):
        self.sock = sock
        self.counts = counts
        self.max_message = int(settings["max_message"])
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=int(settings["max_queue"]))
        self.client = MirrorClient(settings["url"], WORKERS, float(settings["timeout_seconds"]))
        self.comparison = Comparison(counts, settings["task"], float(settings["tolerance"]))
        self.stopping = asyncio.Event()
        self.close_seconds = float(settings.get("close_seconds", CLOSE_SECONDS))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        self.counts.array[mc.READY] = os.getpid()
        workers = [loop.create_task(self._work(slot)) for slot in range(WORKERS)]
        flusher = loop.create_task(self._flush_often())
        reader = loop.create_task(self._read())
        stop = loop.create_task(self.stopping.wait())
        # until the primary closes its end (it stops, or died) or tells us to stop (SIGTERM)
        await asyncio.wait((reader, stop), return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        try:  # what was handed over, sent for CLOSE_SECONDS at most
            await asyncio.wait_for(asyncio.gather(asyncio.shield(reader), self.queue.join()),
                                   self.close_seconds)
        except TimeoutError:
            pass
        for task in (reader, *workers, flusher):
            task.cancel()
        await asyncio.gather(reader, *workers, flusher, return_exceptions=True)
        self.comparison.flush()
        self._drop_the_rest()
        self.client.close()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = bytearray(self.max_message)
        while True:
            n = await loop.sock_recv_into(self.sock, buffer)
            if n == 0:
                return  # the primary closed its end
            with self.counts.writing() as a:
                a[mc.RECEIVED] += 1
            # waits while the queue is full: the socket's buffer holds the next copies, then
            # the primary drops them
            await self.queue.put(unpack(bytes(buffer[:n])))

    def _drop_the_rest(self) -> None:
        """Count as dropped (`shutdown`) every copy taken and not finished, and every copy
        still in the socket."""
        unread = 0
        buffer = bytearray(self.max_message)
        while True:
            try:
                if self.sock.recv_into(buffer) == 0:
                    break
            except (BlockingIOError, OSError):
                break
            unread += 1
        with self.counts.writing() as a:
            a[mc.RECEIVED] += unread
            a[mc.DROPPED_SHUTDOWN] += a[mc.RECEIVED] - a[mc.DONE]
            a[mc.DONE] = a[mc.RECEIVED]

    async def _flush_often(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if self.comparison.pending:
                self.comparison.flush()

    async def _work(self, slot: int) -> None:
        while True:
            copy = await self.queue.get()
            try:
                await self._send(slot, *copy)
            except Exception:  # a bug in comparing must not stop the mirror
                log.exception("comparing the shadow's answer failed")
            finally:
                self.queue.task_done()

    async def _send(self, slot: int, rid: str, path: str, body: bytes, answer: bytes) -> None:
        start = time.perf_counter()
        try:
            status, shadow = await self.client.post(slot, path, body, {
                "content-type": "application/json", request_id.HEADER: rid})
        except (MirrorError, TimeoutError):
            self.comparison.add(TRANSPORT_ERROR, None, answer, None)
            return
        self.comparison.add(status, time.perf_counter() - start, answer, shadow)


def yield_cpu(scheduling: str) -> None:
    """Lower this process's claim on the CPU (`idle`, `nice`) or leave it (`normal`)."""
    if scheduling == "idle":
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except (AttributeError, OSError):  # not Linux: the next best thing
            scheduling = "nice"
    if scheduling == "nice":
        os.nice(NICENESS)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    sock_fd, counts_fd, settings = int(argv[0]), int(argv[1]), json.loads(argv[2])
    # a terminal's Ctrl-C reaches the whole process group: the primary drains this one
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # where the sender and the primary want the same CPU (the container's limit is one core,
    # or the node is busy), the primary's clients go first: a sender that falls behind fills
    # its queue and the primary drops copies (counted), instead of answering later
    yield_cpu(settings.get("scheduling", "idle"))
    sock = socket.socket(fileno=sock_fd)
    sock.setblocking(False)
    sender = Sender(sock, mc.SharedCounts(counts_fd), settings)
    asyncio.run(sender.run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
