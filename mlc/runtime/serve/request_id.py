"""The request id: one id per client request, kept by every server that handles it.

A client may send `x-request-id`; otherwise the first server to see the request (the router
or the primary) makes one. It is returned to the client, travels with the router's forward
and the primary's copy to its shadow, and is written beside every logged prediction, so
that the primary's and the shadow's answers to one request join on it.
"""

from __future__ import annotations

import re
import uuid

HEADER = "x-request-id"
HEADER_BYTES = HEADER.encode()
# What a client's id may be: it lands in logs and headers verbatim. Anything else is
# replaced, not refused: the id is a convenience of the client, not part of its request.
_ACCEPTED = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


def new() -> str:
    return uuid.uuid4().hex


def from_headers(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's id from ASGI headers (lower-case names), or a new one."""
    for key, value in headers:
        if key == HEADER_BYTES:
            if _ACCEPTED.fullmatch(value):
                return value.decode("ascii")
            break
    return new()
