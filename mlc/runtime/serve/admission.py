"""Refusing work, the same way in the model server and the A/B router: before the body is
read, as cheaply as the answer allows, and counted by reason.

Under a storm of clients that ignore Retry-After, each refusal is answered at once and the
client asks again at once: the refusals' rate is set by how fast the server answers them.
Answered by the ASGI app, a refusal costs the event loop a parse of every header, a scope,
a task and two `send` messages; the loop, busy with nothing else, then holds the GIL that
the model thread needs between its operations, and the model serves a fraction of what it
serves without the storm. So a request that will be refused anyway is answered here, in
the protocol's `data_received` (connections.py), from the request line alone: one bytes
comparison, a ready-made answer, and `Connection: close`, which sends the client back
through TCP's accept queue, paced by the kernel and by the client's own reconnect, instead
of a keep-alive loop that costs the server more than it costs the client.

The app decides what to refuse (`refuse_early(data)` returning the answer's bytes, or None
to let the request through); this module holds what both apps share: reading the request
line, the client's request id from the raw head, the answer's bytes, and the counter of
refusals by reason (`mlc_rejected_requests_total`, every reason from 0).

Even answered from the request line, a refusal costs the server a connection's whole life
(accept, the protocol's set-up, a read, a write, a close), and clients that ignore
Retry-After and reconnect at once ask again as fast as they are answered: tens of thousands
of refusals a second, which take the CPU the model needs. `RefusalLimit` bounds that rate
with a token bucket (`MLC_REFUSAL_RATE` refusals a second, `MLC_REFUSAL_BURST` at once).
Past it, a refused connection is parked: it is read no further, and it gets a minimal
answer (503, Retry-After, `Connection: close`, no body) when a token frees up, in arrival
order. A client that ignores Retry-After is then answered at the refusal rate, not at the
rate it asks, and the server spends on refusals at most that rate's worth of CPU. The
parked connections are bounded (`max_parked`); past that bound the minimal answer goes out
at once. Both are counted as `reason="refusal_limit"` (and under `code="503"`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Iterator

from mlc import metrics as contract

from . import request_id
from .metrics import family, label_values
from .settings import RefusalRate

__all__ = ["PARK", "Park", "RefusalLimit", "RefusalRate", "Rejections", "answer", "early_request",
           "minimal_answer", "request_id_in"]

_PHRASES = {408: b"Request Timeout", 413: b"Content Too Large", 503: b"Service Unavailable"}
_ID_HEADER = b"\r\n" + request_id.HEADER_BYTES + b":"


def early_request(data: bytes, method: bytes = b"POST") -> tuple[bytes, bytes] | None:
    """(path, head) of the request at the start of `data` when it is a `method` request
    whose headers are all in `data`, or None (the app then reads it as usual). The path is
    the raw target without its query; `head` ends before the blank line."""
    if not data.startswith(method + b" "):
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    start = len(method) + 1
    stop = data.find(b" ", start, end)
    if stop < 0:
        return None
    target = data[start:stop]
    query = target.find(b"?")
    return (target if query < 0 else target[:query]), data[:end]


def request_id_in(head: bytes) -> str:
    """The client's `x-request-id` in a raw request head (any case), or a new id."""
    at = head.lower().find(_ID_HEADER)
    if at >= 0:
        start = at + len(_ID_HEADER)
        stop = head.find(b"\r\n", start)
        value = head[start:stop if stop >= 0 else len(head)].strip()
        return request_id.from_headers([(request_id.HEADER_BYTES, value)])
    return request_id.new()


def answer(status: int, doc: dict, rid: str, retry_after: int | None) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    retry = b"retry-after: %d\r\n" % retry_after if retry_after is not None else b""
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n%s"
            b"x-request-id: %s\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
            % (status, _PHRASES[status], retry, rid.encode(), len(body))) + body


def minimal_answer(retry_after: int) -> bytes:
    """The cheapest refusal: 503, Retry-After, `Connection: close`, no body."""
    return (b"HTTP/1.1 503 Service Unavailable\r\nretry-after: %d\r\nconnection: close\r\n"
            b"content-length: 0\r\n\r\n" % retry_after)


class Park:
    def __repr__(self) -> str:
        return "PARK"


# What `refuse_early` returns for a request to refuse past the refusal rate: the protocol
# parks its connection with the app's `refusal_limit` (connections.py).
PARK = Park()


class RefusalLimit:
    """The token bucket of refusals, and the connections parked past it (module docstring).
    `retry_after()`: the Retry-After of the minimal answers, when they go out. The app
    counts the refusals it parks."""

    def __init__(self, rate: RefusalRate, retry_after: Callable[[], int]):
        self.rate = rate
        self._retry_after = retry_after
        self._tokens = float(rate.burst)
        self._at = time.perf_counter()
        self._parked: deque[asyncio.Transport] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.limited = 0  # refusals past the rate (parked, or answered at once when full)

    def take(self) -> bool:
        """Whether a refusal may be answered in full now (and a token is spent on it)."""
        self._refill()
        if self._tokens >= 1 and not self._parked:
            self._tokens -= 1
            return True
        return False

    def _refill(self) -> None:
        now = time.perf_counter()
        self._tokens = min(float(self.rate.burst),
                           self._tokens + (now - self._at) * self.rate.rate)
        self._at = now

    @property
    def parked(self) -> int:
        return len(self._parked)

    def park(self, transport: asyncio.Transport) -> None:
        """Hold `transport`'s refusal until a token frees up (or answer it at once when too
        many are held already)."""
        self.limited += 1
        if len(self._parked) >= self.rate.max_parked:
            _refuse(transport, minimal_answer(self._retry_after()))
            return
        transport.pause_reading()
        self._parked.append(transport)
        if self._timer is None:
            self._schedule()

    def _schedule(self) -> None:
        wait = max((1 - self._tokens) / self.rate.rate, 0.001)
        self._timer = asyncio.get_running_loop().call_later(wait, self._release)

    def _release(self) -> None:
        self._timer = None
        self._refill()
        answer = None
        while self._parked and self._tokens >= 1:
            transport = self._parked.popleft()
            if transport.is_closing():  # the client gave up: no token spent
                continue
            self._tokens -= 1
            answer = answer or minimal_answer(self._retry_after())
            _refuse(transport, answer)
        if self._parked:
            self._schedule()

    def close(self) -> None:
        """Answer every parked connection now (the server is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._parked:
            transport = self._parked.popleft()
            if not transport.is_closing():
                _refuse(transport, minimal_answer(self._retry_after()))


def _refuse(transport: asyncio.Transport, answer: bytes) -> None:
    transport.write(answer)
    transport.close()


class Rejections:
    """Refusals by reason, each from 0 (a reason outside the contract is a bug: KeyError)."""

    def __init__(self):
        self.counts = dict.fromkeys(contract.REJECTION_REASONS, 0)

    def count(self, reason: str) -> None:
        self.counts[reason] += 1

    def families(self, endpoint: str, variant: str) -> Iterator:
        rejected = family(contract.REJECTED)
        for reason, n in sorted(self.counts.items()):
            rejected.add_metric(label_values(contract.REJECTED, endpoint=endpoint,
                                             variant=variant, reason=reason), n)
        yield rejected
