"""The A/B router holds the server's bounds, run as the real router process on 127.0.0.1
(`python -m mlc.runtime route`, as the manifests start it) in front of a real HTTP variant
in this process that answers at once, or after a delay on `/slow`:

- a slowloris that never finishes its headers is closed at the header deadline;
- a body sent a byte a second is cut at the body deadline with 408, and the connection closed;
- past its forwards in flight, a request is refused with 503 + Retry-After before its body
  is read (a client that sends only its headers still gets the 503);
- past the connection limit, the router itself answers 503 + Retry-After, and counts it;
- every refusal is in `mlc_rejected_requests_total{reason}` on the router's /metrics, each
  reason there from 0;
- on SIGTERM under load, it keeps forwarding through its drain and fails nothing in flight.

Pass/fail rests on status codes, headers and counters; waits are bounded far beyond any
correct run.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import httpx
import pytest

from mlc import metrics as contract

from . import storm_clients
from .test_serve_traffic import Process

pytestmark = pytest.mark.slow  # a real router process in front of a real variant

HEADER_TIMEOUT = 1
BODY_TIMEOUT = 1
MAX_CONNECTIONS = 30
MAX_INFLIGHT = 4
SLOW_SECONDS = 2.0
DRAIN_SECONDS = 1


class Variant:
    """A keep-alive HTTP/1.1 server on its own loop and thread: 200 with a JSON body, after
    SLOW_SECONDS on paths under /slow."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.answered = 0
        started = threading.Event()

        async def serve():
            self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()
            with contextlib.suppress(asyncio.CancelledError):  # stop() closes it
                await self.server.serve_forever()

        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(serve()),
                                       daemon=True)
        self.thread.start()
        assert started.wait(30)
        self.url = f"http://127.0.0.1:{self.port}"

    async def _connection(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next((int(v) for k, _, v in (line.partition(":") for line in lines)
                               if k.strip().lower() == "content-length"), 0)
                await reader.readexactly(length)
                if lines[0].split()[1].startswith("/slow"):
                    await asyncio.sleep(SLOW_SECONDS)
                body = b'{"predictions":[1]}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("router-bounds")
    variant = Variant()
    config = {"role": "router", "endpoint": "shop", "port": 0, "timeout_seconds": 30,
              "assignment": {}, "variants": [{"name": "a", "weight": 100, "url": variant.url}]}
    proc = Process(tmp, "router", ["route", "--endpoint", "shop"], config, {
        "MLC_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "MLC_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "MLC_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "MLC_ROUTER_MAX_INFLIGHT": str(MAX_INFLIGHT),
        "MLC_DRAIN_SECONDS": str(DRAIN_SECONDS)})
    try:
        proc.wait_ready(60)
        yield proc
    finally:
        if proc.proc.poll() is None:
            proc.stop()
        variant.stop()


def rejected(router) -> dict[str, float]:
    return {dict(labels)["reason"]: value for (name, labels), value in router.metrics().items()
            if name == contract.REJECTED.name}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def read_answer(sock: socket.socket, until: float) -> bytes:
    """Everything the router sends until it closes the socket (or `until`)."""
    data = b""
    while time.monotonic() < until:
        sock.settimeout(max(until - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def test_every_reason_is_counted_from_zero(router):
    samples = router.metrics()
    labels = {dict(lab)["reason"]: dict(lab) for (name, lab), _ in samples.items()
              if name == contract.REJECTED.name}
    assert set(labels) == set(contract.REJECTION_REASONS)
    assert all(lab == {"endpoint": "shop", "variant": "router", "reason": reason}
               for reason, lab in labels.items())


def test_a_slowloris_is_closed_at_the_header_deadline(router):
    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + 30  # the router's deadline is 1 s
        closed = False
        while time.monotonic() < deadline:
            s.settimeout(0.5)
            try:
                if s.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                s.sendall(b"X-a: b\r\n")  # a header line now and then, never the end
            except ConnectionResetError:
                closed = True
                break
    assert closed, "the router kept a connection whose headers never ended"


def test_a_body_sent_a_byte_a_second_is_cut_at_the_deadline(router):
    before = rejected(router)
    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50\r\n\r\n")
        sent, answer = 0, b""
        s.settimeout(0.5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sent < 50:
            try:
                answer = s.recv(65536)
                break
            except TimeoutError:
                s.sendall(b" ")
                sent += 1
        answer += read_answer(s, time.monotonic() + 10)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()
    assert sent < 50
    assert delta(rejected(router), before) == {"body_timeout": 1}


def test_past_its_forwards_in_flight_it_refuses_before_the_body(router):
    before = rejected(router)
    body = b'{"instances": [{"x": 1}]}'
    with httpx.Client(base_url=router.url, timeout=30) as client:
        slow = [threading.Thread(target=client.post, args=("/slow",), kwargs={"content": body})
                for _ in range(MAX_INFLIGHT)]
        for t in slow:
            t.start()
        try:
            deadline = time.monotonic() + 30
            status = None
            while time.monotonic() < deadline:
                time.sleep(0.1)  # until the slow forwards fill the router
                with socket.create_connection(("127.0.0.1", router.port), timeout=30) as s:
                    # headers only: a 503 can only be an answer decided before the body
                    s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100"
                              b"\r\nx-request-id: probe-1\r\n\r\n")
                    answer = read_answer(s, time.monotonic() + 10)
                status = int(answer.split()[1]) if answer else None
                if status == 503:
                    break
            assert status == 503, answer
            head = answer.split(b"\r\n\r\n", 1)[0].lower()
            assert b"retry-after: 1" in head and b"connection: close" in head
            assert b"x-request-id: probe-1" in head
        finally:
            for t in slow:
                t.join(60)
        assert client.post("/predict", content=body).status_code == 200  # room again
    after = delta(rejected(router), before)
    # probes before the forwards were all in flight timed out on their missing bodies
    assert after["overload"] == 1 and set(after) <= {"overload", "body_timeout"}, after


def test_the_connection_limit_is_answered_and_counted(router):
    before = rejected(router)
    idle = [socket.create_connection(("127.0.0.1", router.port), timeout=30)
            for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # let the router accept them all (their header deadline is 1 s)
        with socket.create_connection(("127.0.0.1", router.port), timeout=30) as s:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_answer(s, time.monotonic() + 10)
    finally:
        for s in idle:
            s.close()
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert b"retry-after: 1" in answer.lower()
    deadline = time.monotonic() + 30
    while delta(rejected(router), before).get("connections", 0) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)  # (the router notices the idle sockets close)
    assert set(delta(rejected(router), before)) == {"connections"}


def test_sigterm_under_load_fails_nothing_in_flight(router):
    """Last: it stops the router. Clients in a closed loop and forwards that take longer
    than the drain are under way when SIGTERM comes: the router keeps forwarding through its
    drain (readiness false), finishes the slow forwards after it, and exits 0."""
    payload = storm_clients.request("/predict", b'{"instances": [{"x": 1}]}')
    storm = storm_clients.start(router.port, payload, MAX_INFLIGHT // 2)
    slow: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(storm.answers.seen) < 100:
            time.sleep(0.05)
        client = httpx.Client(base_url=router.url, timeout=60)
        threads = [threading.Thread(target=lambda: slow.append(
            client.post("/slow", content=b"{}").status_code)) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # the slow forwards are in flight
        router.proc.send_signal(15)
        time.sleep(DRAIN_SECONDS / 2)  # in the drain: still forwarding, not ready
        ready = httpx.get(router.url + "/v2/health/ready", timeout=10).status_code
        before_stop = storm.answers.count(200)
    finally:
        answers = storm_clients.finish(storm)  # within the drain: their last answers come
    for t in threads:
        t.join(60)
    client.close()
    code = router.proc.wait(timeout=60)
    assert code == 0, router.output()
    assert ready == 503
    assert answers.codes == {200} and answers.unanswered == 0, answers
    assert before_stop >= 100
    assert slow == [200, 200]  # in flight past the drain, finished before the exit
