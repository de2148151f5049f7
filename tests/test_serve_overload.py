"""What the serving runtime refuses, and that it counts every refusal, against the real server
process on 127.0.0.1 (one server for the module: test_serve.py's Server and torch model):

- overload: past capacity, requests are refused with 503 + Retry-After, and a request that
  would wait past the SLO is refused before its body is read (a client that sends only its
  headers still gets the 503);
- a body sent a byte a second is cut at the body deadline with 408, and the connection closed;
- past the connection limit, the app itself answers 503 + Retry-After, and counts it.

Latencies seen by the clients are printed, never asserted: pass/fail rests on status codes,
headers and counters, and on bounded waits far longer than any correct run needs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from mlc import metrics as contract
from mlc.compiler import ir

from .test_serve import ENDPOINT, dev  # noqa: F401
from .test_serve_hardening import _serve

pytestmark = pytest.mark.slow  # one real server and a model slow enough to overload
SLO = 0.05
MAX_CONNECTIONS = 150
BODY_TIMEOUT = 2
CLIENTS = 100  # over capacity: the model answers a few batches of 4 in 50 ms


@pytest.fixture(scope="module")
def server(tmp_path_factory, dev):  # noqa: F811
    tmp = tmp_path_factory.mktemp("serve-overload")
    srv, body = _serve(
        tmp, dev, [4096, 4096],
        {"MLC_MAX_CONNECTIONS": str(MAX_CONNECTIONS), "MLC_BODY_TIMEOUT_SECONDS":
         str(BODY_TIMEOUT), "MLC_DRAIN_SECONDS": "0"},
        batching=ir.Batching(max_batch_size=4, max_latency_seconds=0.0, max_queue=256),
        slo=dev.endpoints[ENDPOINT].slo.model_copy(update={"latency_seconds": SLO}))
    srv.body = body
    try:
        srv.wait("/v2/health/ready")
        for _ in range(20):  # the batcher measures how long a model call takes
            assert srv.http.post("/predict", json=body).status_code == 200
        yield srv
    finally:
        code = srv.stop()
    assert code == 0, srv.output()


def counters(server) -> tuple[dict[str, float], dict[str, float]]:
    """(rejections by reason, /predict requests by code) from the server's /metrics."""
    rejected, requests = {}, {}
    for line in server.http.get("/metrics").text.splitlines():
        if line.startswith(contract.REJECTED.name + "{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            rejected[reason] = rejected.get(reason, 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("mlc_requests_total{") and f'route="{contract.PREDICT_ROUTE}"' in line:
            code = line.split('code="', 1)[1].split('"', 1)[0]
            requests[code] = requests.get(code, 0) + float(line.rsplit(" ", 1)[1])
    return rejected, requests


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def raw_response(sock: socket.socket, until: float) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response off `sock` (status, headers, body), waiting until `until`."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(until - time.monotonic(), 0.01))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    while len(rest) < int(headers.get("content-length", 0)):
        sock.settimeout(max(until - time.monotonic(), 0.01))
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def headers_only(server) -> tuple[int, dict[str, str]]:
    """A request that announces a body and never sends it: only an answer decided before
    the body is read can be anything but 408."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n")
        status, headers, _ = raw_response(s, time.monotonic() + 30)
    return status, headers


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[int(q * (len(values) - 1))] if values else float("nan")


def test_overload_is_refused_before_the_body_is_read(server):
    before = counters(server)
    stop = threading.Event()
    results: list[tuple[int, float, str | None]] = []

    async def flood():
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=httpx.Limits(
                max_connections=CLIENTS)) as client:
            async def one_client():
                while not stop.is_set():
                    start = time.perf_counter()
                    r = await client.post("/predict", json=server.body)
                    results.append((r.status_code, time.perf_counter() - start,
                                    r.headers.get("retry-after")))
            await asyncio.gather(*[one_client() for _ in range(CLIENTS)])

    flooding = threading.Thread(target=lambda: asyncio.run(flood()), daemon=True)
    flooding.start()
    probes = []
    try:
        deadline = time.monotonic() + 60  # bounds a failing run only
        while time.monotonic() < deadline and len(results) < 20:
            time.sleep(0.05)  # the flood is under way
        for _ in range(5):
            probes.append(headers_only(server))
            if probes[-1][0] == 503:
                break
    finally:
        stop.set()
        flooding.join(120)
    assert not flooding.is_alive()
    codes = [status for status, _, _ in results]
    shed = [t for status, t, _ in results if status == 503]
    served = [t for status, t, _ in results if status == 200]
    print(f"\n{CLIENTS} clients for {len(results)} requests: {len(shed)} x 503, "
          f"{len(served)} x 200; at the client, 503 p50 {percentile(shed, 0.5) * 1000:.0f} ms "
          f"p99 {percentile(shed, 0.99) * 1000:.0f} ms, 200 p99 "
          f"{percentile(served, 0.99) * 1000:.0f} ms (SLO {SLO * 1000:.0f} ms); "
          f"probes {[p[0] for p in probes]}")
    assert set(codes) <= {200, 503}, codes
    assert shed and served
    assert all(retry == "1" for status, _, retry in results if status == 503)
    # the headers-only probe was refused without waiting for its body
    assert probes[-1][0] == 503 and probes[-1][1]["retry-after"] == "1", probes
    assert {p[0] for p in probes} <= {503, 408}  # 408: that probe came in a lull
    rejected, requests = (delta(a, b) for a, b in zip(counters(server), before, strict=True))
    refused = len(shed) + sum(1 for p in probes if p[0] == 503)
    timed_out = sum(1 for p in probes if p[0] == 408)
    assert rejected == {"overload": refused, **({"body_timeout": timed_out} if timed_out
                                                 else {})}
    assert requests == {"200": len(served), "503": refused,
                        **({"408": timed_out} if timed_out else {})}


def test_a_body_sent_a_byte_a_second_is_cut_at_the_deadline(server):
    before = counters(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50\r\n\r\n")
        deadline = time.monotonic() + 30  # the server's deadline is 2 s
        sent = 0
        s.settimeout(1.0)
        answer = b""
        while time.monotonic() < deadline and sent < 50:
            try:
                answer = s.recv(65536)
                break  # the server answered (or closed) before the body was complete
            except TimeoutError:
                s.sendall(b" ")  # one byte a second
                sent += 1
        assert answer, "no answer before the body would have been complete"
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"connection: close" in answer.lower()
        s.settimeout(10)
        try:
            rest = s.recv(65536)
            while rest:  # whatever is left of the answer, then the close
                rest = s.recv(65536)
        except ConnectionResetError:
            pass
    print(f"\nslow body: answered 408 after {sent} bytes (deadline {BODY_TIMEOUT} s)")
    assert sent < 50
    rejected, requests = (delta(a, b) for a, b in zip(counters(server), before, strict=True))
    assert rejected == {"body_timeout": 1} and requests == {"408": 1}


def test_the_connection_limit_is_answered_and_counted_by_the_app(server):
    before = counters(server)
    server.http.close()  # its kept-alive connection would count towards the limit
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=30)
            for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # let the server accept them all
        with httpx.Client(base_url=server.url, timeout=10) as c:
            over = c.post("/predict", json=server.body)
    finally:
        for s in idle:
            s.close()
    assert over.status_code == 503, over.text
    assert over.headers["retry-after"] == "1"
    assert over.headers["connection"] == "close"
    assert json.loads(over.text) == {"error": "over the connection limit"}
    server.http = httpx.Client(base_url=server.url, timeout=10)
    deadline = time.monotonic() + 30  # the server notices the closed sockets
    while server.http.post("/predict", json=server.body).status_code != 200:
        assert time.monotonic() < deadline, "no room after the idle connections closed"
        time.sleep(0.1)
    rejected, requests = (delta(a, b) for a, b in zip(counters(server), before, strict=True))
    # (a retry above may have met the limit too, before the server saw the sockets close)
    assert set(rejected) == {"connections"} and rejected["connections"] >= 1
    assert requests["503"] == rejected["connections"] and set(requests) <= {"200", "503"}
