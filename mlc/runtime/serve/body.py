"""Reading a request body off the ASGI channel, bounded in size and in time, and writing a
whole response onto it: the server, the router and the payload log's receiver share them.

The header deadline (connections.py) ends once a request's headers are complete; from then
on, a client that sends its body a byte a second would hold a slot of the server for as
long as it likes. `seconds` bounds the whole body: it must be complete that long after the
headers, or the read stops with BodyTimeout (the server answers 408 and closes).
"""

from __future__ import annotations

import asyncio


class Disconnected(Exception):
    """The client went away before its body arrived: there is no one to answer."""


class BodyTimeout(Exception):
    """The body was not complete within its deadline."""


async def read_body(headers, receive, limit: int, seconds: float | None = None
                    ) -> bytes | None:
    """The request body, or None when it is (or declares itself) over `limit` bytes; raises
    BodyTimeout when it takes longer than `seconds` (None: no deadline)."""
    for key, value in headers:
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            return None  # refused before a byte of it is read
    if seconds is None:
        return await _read(receive, limit)
    try:
        async with asyncio.timeout(seconds):
            return await _read(receive, limit)
    except TimeoutError:
        raise BodyTimeout() from None


async def _read(receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_response(send, status: int, body: bytes,
                        headers: list[tuple[bytes, bytes]]) -> None:
    """A whole response: the status, `headers` and the body's length, then the body."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
