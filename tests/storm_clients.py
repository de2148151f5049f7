"""Clients that ignore Retry-After: raw keep-alive HTTP/1.1 connections in a closed loop, each
sending its next request the moment an answer arrives (and reconnecting at once when the
server closes), far cheaper per request than an HTTP library, so that the server, not the
client, is what runs out of time. Used against the real server and router processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Answers:
    """What the clients saw: one (status, retry-after, connection: close) per answer, and the
    connections the server closed with a request unanswered or refused outright."""

    seen: list[tuple[int, str | None, bool]] = field(default_factory=list)
    unanswered: int = 0
    refused: int = 0
    bodiless: int = 0  # answers without a body (content-length 0)

    def count(self, status: int) -> int:
        return sum(1 for s, _, _ in self.seen if s == status)

    @property
    def codes(self) -> set[int]:
        return {s for s, _, _ in self.seen}


def request(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + extra + b"\r\n" + body


class _Client(asyncio.Protocol):
    def __init__(self, payload: bytes, answers: Answers, stop: threading.Event,
                 done: asyncio.Future):
        self.payload, self.answers, self.stop, self.done = payload, answers, stop, done
        self.buffer, self.need, self.waiting, self.transport = b"", None, False, None

    def connection_made(self, transport):
        self.transport = transport
        self._send()

    def _send(self):
        if self.stop.is_set():
            self.transport.close()
            return
        self.waiting = True
        self.transport.write(self.payload)

    def data_received(self, data: bytes):
        self.buffer += data
        while True:
            if self.need is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buffer[:end].decode("latin-1").lower().split("\r\n")
                headers = dict(line.split(":", 1) for line in head[1:] if ":" in line)
                headers = {k.strip(): v.strip() for k, v in headers.items()}
                self.status = int(head[0].split()[1])
                self.retry = headers.get("retry-after")
                self.closing = headers.get("connection") == "close"
                self.need = end + 4 + int(headers.get("content-length", 0))
                self.answers.bodiless += self.need == end + 4
            if len(self.buffer) < self.need:
                return
            self.answers.seen.append((self.status, self.retry, self.closing))
            self.waiting = False
            self.buffer, self.need = self.buffer[self.need:], None
            if self.closing:
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc):
        if self.waiting:
            self.answers.unanswered += 1
        if not self.done.done():
            self.done.set_result(None)


def run(port: int, payload: bytes, clients: int, seconds: float) -> Answers:
    """`clients` connections in a closed loop for `seconds`, in a thread of its own (the
    caller may probe the server meanwhile with `start`/`finish` instead)."""
    storm = start(port, payload, clients)
    time.sleep(seconds)
    return finish(storm)


@dataclass
class Running:
    thread: threading.Thread
    stop: threading.Event
    answers: Answers


def start(port: int, payload: bytes, clients: int) -> Running:
    answers, stop = Answers(), threading.Event()

    async def one(loop):
        while not stop.is_set():
            done = loop.create_future()
            try:
                transport, _ = await loop.create_connection(
                    lambda done=done: _Client(payload, answers, stop, done), "127.0.0.1", port)
            except OSError:
                answers.refused += 1
                await asyncio.sleep(0.01)
                continue
            # each client ends after the answer to its last request (none is cut off, so
            # what the clients saw and what the server counted agree)
            try:
                await asyncio.wait_for(done, 60)
            except TimeoutError:
                transport.close()

    async def all_clients():
        loop = asyncio.get_running_loop()
        await asyncio.gather(*[one(loop) for _ in range(clients)])

    thread = threading.Thread(target=lambda: asyncio.run(all_clients()), daemon=True)
    thread.start()
    return Running(thread, stop, answers)


def finish(storm: Running, timeout: float = 120) -> Answers:
    storm.stop.set()
    storm.thread.join(timeout)
    assert not storm.thread.is_alive(), "the clients did not stop"
    return storm.answers


def _tasks(pid: int) -> list[int]:
    """Every thread of `pid` and of its descendants (affinity is per thread on Linux)."""
    tids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        tids.append(int(task.name))
        for child in (task / "children").read_text().split():
            tids += _tasks(int(child))
    return tids


@contextlib.contextmanager
def apart(server_pid: int):
    """The calling process (the clients) on one CPU and the server, its threads and its
    children on the others, while the block runs; nothing changes on a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield
        return
    server = {tid: os.sched_getaffinity(tid) for tid in _tasks(server_pid)}
    for tid in server:
        os.sched_setaffinity(tid, cpus[1:])
    os.sched_setaffinity(0, cpus[:1])
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)
        for tid, mask in server.items():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, mask)
