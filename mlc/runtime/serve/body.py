"""Reading a request body off the ASGI channel, bounded: the server and the router share it."""

from __future__ import annotations


class Disconnected(Exception):
    """The client went away before its body arrived: there is no one to answer."""


async def read_body(headers, receive, limit: int) -> bytes | None:
    """The request body, or None when it is (or declares itself) over `limit` bytes."""
    for key, value in headers:
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            return None  # refused before a byte of it is read
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
