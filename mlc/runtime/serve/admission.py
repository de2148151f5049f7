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
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from mlc import metrics as contract

from . import request_id
from .metrics import family, label_values

__all__ = ["Rejections", "answer", "early_request", "request_id_in"]

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
