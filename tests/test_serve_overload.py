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

import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from mlc import metrics as contract
from mlc.compiler import ir

from . import storm_clients
from .test_serve import ENDPOINT, dev  # noqa: F401
from .test_serve_hardening import _serve

pytestmark = pytest.mark.slow  # one real server and a model slow enough to overload
SLO = 0.05
MAX_CONNECTIONS = 150
BODY_TIMEOUT = 2
CLIENTS = 100  # over capacity: the model answers a few batches of 4 in 50 ms
STORM_SECONDS = 2.0
STORM_SHARE = 0.05


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


def _payload(server) -> bytes:
    return storm_clients.request("/predict", json.dumps(server.body).encode())


def test_overload_is_refused_before_the_body_is_read(server):
    before = counters(server)
    storm = storm_clients.start(server.port, _payload(server), CLIENTS)
    probes = []
    try:
        deadline = time.monotonic() + 60  # bounds a failing run only
        while time.monotonic() < deadline and len(storm.answers.seen) < 200:
            time.sleep(0.05)  # the storm is under way
        for _ in range(5):
            probes.append(headers_only(server))
            if probes[-1][0] == 503:
                break
    finally:
        answers = storm_clients.finish(storm)
    shed, served = answers.count(503), answers.count(200)
    print(f"\n{CLIENTS} clients for {len(answers.seen)} answers: {shed} x 503, {served} x 200; "
          f"probes {[p[0] for p in probes]}")
    assert answers.codes <= {200, 503}, answers.codes
    assert answers.unanswered == 0 and answers.refused == 0
    assert shed and served
    assert all(retry == "1" for status, retry, _ in answers.seen if status == 503)
    # the headers-only probe was refused without waiting for its body
    assert probes[-1][0] == 503 and probes[-1][1]["retry-after"] == "1", probes
    assert {p[0] for p in probes} <= {503, 408}  # 408: that probe came in a lull
    rejected, requests = (delta(a, b) for a, b in zip(counters(server), before, strict=True))
    refused = shed + sum(1 for p in probes if p[0] == 503)
    timed_out = sum(1 for p in probes if p[0] == 408)
    # overload refusals answered in full, or past the refusal rate minimally (refusal_limit),
    # or admitted and past their deadline
    shed_reasons = {k: v for k, v in rejected.items() if k != "body_timeout"}
    assert set(shed_reasons) <= {"overload", "refusal_limit", "deadline"}, rejected
    assert sum(shed_reasons.values()) == refused
    assert rejected.get("body_timeout", 0) == timed_out
    assert requests == {"200": served, "503": refused,
                        **({"408": timed_out} if timed_out else {})}


def test_the_model_keeps_serving_through_a_storm(server):
    """Clients that ignore Retry-After, ten times more than the model can serve: the model
    still answers a good share of what it answers without them (the clients on one CPU, the
    server and its model process on the others, as clients elsewhere would be). The share
    asked for is far
    below what the benchmark measures (bench/bench_serve_overload.py), so that a loaded CI
    machine cannot fail it (on this 2-core machine under others' load, 7-71 % was seen); a
    server whose refusals starve the model (the ASGI app answering each one on a kept-alive
    connection, as before) served 1-2 %."""
    with storm_clients.apart(server.proc.pid):
        calm = storm_clients.run(server.port, _payload(server), 8, STORM_SECONDS)
        stormy = storm_clients.run(server.port, _payload(server), CLIENTS, STORM_SECONDS)
    print(f"\nin {STORM_SECONDS} s: {calm.count(200)} answered by the model with 8 clients, "
          f"{stormy.count(200)} with {CLIENTS} (and {stormy.count(503)} refused)")
    assert calm.codes == {200} or calm.codes == {200, 503}
    assert stormy.codes <= {200, 503} and stormy.count(503) > 0
    assert stormy.unanswered == 0 and stormy.refused == 0
    assert stormy.count(200) >= STORM_SHARE * calm.count(200)
    # the refusals close their connections: a storm costs the server a connection each
    assert all(close for status, _, close in stormy.seen if status == 503)


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


def test_the_model_runs_in_a_process_of_its_own_and_liveness_follows_it(server):
    """Last: it ends the module's model. The server's model is a child process; when it is
    gone, liveness turns 503 (so the kubelet restarts the pod) and calls fail as errors."""
    children = [int(c) for task in Path(f"/proc/{server.proc.pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    models = [c for c in children
              if b"mlc.runtime.serve.model_process" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(models) == 1, children
    assert server.http.get("/v2/health/live").status_code == 200
    os.kill(models[0], signal.SIGKILL)
    deadline = time.monotonic() + 30  # bounds a failing run only
    while server.http.get("/v2/health/live").status_code != 503:
        assert time.monotonic() < deadline, "liveness never noticed the model process exit"
        time.sleep(0.05)
    answer = server.http.post("/predict", json=server.body)
    assert answer.status_code == 500 and "ModelProcessError" in answer.text, answer.text
