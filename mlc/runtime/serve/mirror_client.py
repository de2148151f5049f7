"""The shadow mirror's HTTP client: keep-alive HTTP/1.1 POSTs on the primary's own loop.

Every copy is sent on the event loop that answers the primary's clients, so what a copy costs
there is taken from them. A general client (aiohttp) spends about 0.3 ms of CPU per request
on a loaded 2-core machine (bench/bench_shadow.py): header objects, cookie jars, tracing
hooks, a response object with its own stream. A copy needs none of it: one request to one
peer, whose answer is read whole and compared. So each connection here is an
asyncio.Protocol that writes one preformatted request and parses the status line, the
headers it needs (Content-Length, Transfer-Encoding, Connection) and the body from the
bytes as they arrive, and resolves one future.

One connection per worker (shadow.WORKERS), opened on first use and again after an error;
a request that does not complete within the timeout closes its connection (the peer may
still answer it: the next request must not read that answer as its own).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class MirrorError(Exception):
    """No usable answer: the connection failed, closed early, timed out or was malformed."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.buffer = bytearray()
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.length: int | None = None  # body bytes, once the head is read
        self.chunked = False
        self.keep_alive = True
        self.head_end = -1

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail("the shadow closed the connection")

    def _fail(self, why: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(MirrorError(why))

    def request(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        self.buffer.clear()
        self._reset()
        self.waiter = loop.create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            return  # an answer nobody waits for (a timed-out request's): dropped
        self.buffer += data
        try:
            answer = self._parse()
        except (ValueError, IndexError) as exc:
            self._fail(f"malformed answer: {exc}")
            self.close()
            return
        if answer is not None:
            self.waiter.set_result(answer)
            if not self.keep_alive:
                self.close()

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if self.head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise ValueError("headers too long")
                return None
            self.head_end = end + 4
            lines = bytes(buf[:end]).split(b"\r\n")
            self.status = int(lines[0].split(b" ", 2)[1])
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == b"content-length":
                    self.length = int(value)
                elif name == b"transfer-encoding":
                    self.chunked = b"chunked" in value
                elif name == b"connection":
                    self.keep_alive = value != b"close"
            if self.length is None and not self.chunked:
                raise ValueError("neither Content-Length nor chunked")
            if self.length is not None and self.length > MAX_BODY_BYTES:
                raise ValueError("body too large")
        if self.chunked:
            body = _dechunk(buf, self.head_end)
            return None if body is None else (self.status, body)
        end = self.head_end + self.length
        if len(buf) < end:
            return None
        return self.status, bytes(buf[self.head_end:end])

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _dechunk(buf: bytearray, start: int) -> bytes | None:
    """The body of a chunked answer in `buf` from `start`, or None while incomplete."""
    out = bytearray()
    pos = start
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out) if buf.find(b"\r\n\r\n", line_end) >= 0 else None
        chunk_start = line_end + 2
        if len(buf) < chunk_start + size + 2:
            return None
        out += buf[chunk_start:chunk_start + size]
        if len(out) > MAX_BODY_BYTES:
            raise ValueError("body too large")
        pos = chunk_start + size + 2


class MirrorClient:
    """POSTs to one peer, at most one in flight per `slot` (a worker's index)."""

    def __init__(self, url: str, slots: int, timeout_seconds: float):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the shadow's address must be http://host[:port]: {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.authority = parts.netloc.encode("ascii")
        self.timeout = timeout_seconds
        self._connections: list[_Connection | None] = [None] * slots

    async def post(self, slot: int, path: str, body: bytes,
                   headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of the peer's answer; MirrorError or TimeoutError without one."""
        loop = asyncio.get_running_loop()
        head = [f"POST {self.prefix}{path} HTTP/1.1\r\nHost: ".encode(), self.authority,
                f"\r\nContent-Length: {len(body)}\r\n".encode()]
        head += [f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items()]
        data = b"".join([*head, b"\r\n", body])
        async with asyncio.timeout(self.timeout):
            conn = self._connections[slot]
            if conn is None or conn.closed:
                try:
                    _, conn = await loop.create_connection(_Connection, self.host, self.port)
                except OSError as exc:
                    raise MirrorError(f"cannot connect: {exc}") from exc
                self._connections[slot] = conn
            try:
                return await conn.request(data, loop)
            except BaseException:
                # timed out or cancelled: the answer may still come, on this connection
                conn.close()
                raise

    def close(self) -> None:
        for conn in self._connections:
            if conn is not None:
                conn.close()
