"""The shadow mirror's HTTP client (mlc/runtime/serve/mirror_client.py) against real sockets:
a real uvicorn server for the ordinary answers, and raw asyncio servers for the answers a
peer may also give (chunked, `Connection: close`, split into many packets, malformed, none).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from mlc.runtime.serve.mirror_client import MirrorClient, MirrorError


async def _raw_server(answer):
    """A server that reads one request head (and its body) and writes `answer(request)`,
    a list of byte strings sent as separate packets (a number: seconds to wait first); None
    closes the connection."""
    requests: list[bytes] = []

    async def handle(reader, writer):
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            requests.append(head + body)
            parts = answer(head + body)
            if parts is None:
                break
            for part in parts:
                if isinstance(part, float):
                    await asyncio.sleep(part)
                    continue
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.001)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], requests


def test_requests_go_out_whole_and_answers_come_back_on_one_connection():
    import uvicorn

    seen: list[tuple[str, bytes, dict]] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append((scope["path"], body, dict(scope["headers"])))
        out = b'{"predictions": [0.25]}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline
        time.sleep(0.05)

    async def scenario():
        client = MirrorClient(f"http://127.0.0.1:{port}", 2, 5.0)
        answers = [await client.post(0, "/predict", b'{"instances": [%d]}' % i,
                                     {"x-request-id": f"r{i}"}) for i in range(3)]
        conn = client._connections[0]
        answers.append(await client.post(0, "/predict", b"{}", {}))
        assert client._connections[0] is conn  # kept alive
        client.close()
        return answers

    try:
        answers = asyncio.run(scenario())
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert answers == [(200, b'{"predictions": [0.25]}')] * 4
    assert [(p, b) for p, b, _ in seen[:3]] == [
        ("/predict", b'{"instances": [%d]}' % i) for i in range(3)]
    assert seen[1][2][b"x-request-id"] == b"r1"


@pytest.mark.parametrize("parts", [
    [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nhello\r\n",
     b"6\r\n world\r\n0\r\n\r\n"],
    [b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 11\r\n\r\nhello", b" world"],
])
def test_answers_in_pieces_and_chunks(parts):
    async def scenario():
        server, port, _ = await _raw_server(lambda request: parts)
        client = MirrorClient(f"http://127.0.0.1:{port}", 1, 5.0)
        try:
            return await client.post(0, "/p", b"x", {})
        finally:
            client.close()
            server.close()

    assert asyncio.run(scenario()) == (200, b"hello world")


def test_connection_close_and_errors_open_a_new_connection():
    answers = iter([[b"HTTP/1.1 503 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"],
                    [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
                    [b"garbage\r\n\r\n"],
                    [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
                    None])

    async def scenario():
        server, port, requests = await _raw_server(lambda request: next(answers))
        client = MirrorClient(f"http://127.0.0.1:{port}", 1, 5.0)
        out = [await client.post(0, "/p", b"x", {}), await client.post(0, "/p", b"x", {})]
        with pytest.raises(MirrorError):
            await client.post(0, "/p", b"x", {})
        out.append(await client.post(0, "/p", b"x", {}))
        with pytest.raises(MirrorError):  # the peer closes without an answer
            await client.post(0, "/p", b"x", {})
        client.close()
        server.close()
        return out, len(requests)

    out, sent = asyncio.run(scenario())
    assert out == [(503, b""), (200, b"ok"), (200, b"ok")]
    assert sent == 5


def test_a_late_answer_is_never_read_as_the_next_one():
    calls = []

    def answer(request):
        calls.append(request)
        if len(calls) == 1:  # answered after the client gave up on it
            return [0.6, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"]
        return [b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"]

    async def scenario():
        server, port, _ = await _raw_server(answer)
        client = MirrorClient(f"http://127.0.0.1:{port}", 1, 0.3)
        with pytest.raises(TimeoutError):
            await client.post(0, "/p", b"first", {})
        result = await client.post(0, "/p", b"second", {})
        await asyncio.sleep(0.5)  # the late answer has been written by now
        client.close()
        server.close()
        return result

    assert asyncio.run(scenario()) == (200, b"second")


def test_nothing_listening_is_an_error_not_a_hang():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario():
        client = MirrorClient(f"http://127.0.0.1:{port}", 1, 2.0)
        with pytest.raises(MirrorError):
            await client.post(0, "/p", b"x", {})

    asyncio.run(scenario())
