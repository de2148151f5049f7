"""The serving runtime under overload, slow clients and shutdown, run as the real server
process on 127.0.0.1 (test_serve.py's Server and registered torch model), and the pods'
shutdown budget as compiled. Figures (share of 503s, p99 of the accepted requests) are
printed, not asserted: pass/fail rests on the mechanism, never on a timing."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import numpy as np
import pytest

from mlc.compiler import ir
from mlc.compiler.backends.serving import pod
from mlc.runtime.serve.batching import Batcher, Overloaded
from mlc.runtime.serve.connections import HttpLimits
from mlc.runtime.serve.settings import settings_for_endpoint

from .test_serve import ENDPOINT, Server, _register, _with_endpoint, dev  # noqa: F401
from .test_serving import ENDPOINTS, KNATIVE_GPU_FLAGS, build, example, pod_specs

KNATIVE_DEFAULT_REVISION_TIMEOUT = 300  # Knative's grace period: the revision's timeout


# --- shedding by expected wait -------------------------------------------------------------------

def test_the_batcher_sheds_what_would_wait_past_the_slo_but_never_a_lone_request():
    def run(rows: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return rows[:, 0]

    async def scenario():
        # the queue holds 100 rows: only the expected wait can refuse here
        batcher = Batcher(run, max_batch_size=1, max_latency=0.0, max_queue=100, max_wait=1.0)
        batcher.start()
        assert batcher.expected_wait(1) == 0.0  # nothing measured: nothing refused
        await batcher.submit(np.array([[1.0]]))  # one call measured: about 0.05 s
        batcher.max_wait = 2.5 * batcher.service_time  # two calls fit, three do not
        running = asyncio.ensure_future(batcher.submit(np.array([[2.0]])))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(batcher.submit(np.array([[3.0]])))  # 2 calls to its answer
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="over the latency SLO"):
            await batcher.submit(np.array([[4.0]]))  # 3 calls
        await asyncio.gather(running, queued)
        slow = Batcher(run, max_batch_size=1, max_latency=0.0, max_queue=100, max_wait=0.001)
        slow.start()
        for _ in range(3):  # each call takes 50 times the SLO, yet alone it is served
            await slow.submit(np.array([[5.0]]))
        await batcher.close()
        await slow.close()
        return batcher.shed, slow.shed

    assert asyncio.run(scenario()) == (1, 0)


def test_requests_on_their_way_count_before_their_bodies_are_read():
    """The server asks `refusal(1, ahead=...)` before it reads a body: the requests whose
    bodies are being read will queue first, a row each at least."""
    batcher = Batcher(lambda rows: rows[:, 0], max_batch_size=2, max_latency=0.0,
                      max_queue=10, max_wait=0.25)
    assert batcher.refusal(1, ahead=8) is None  # nothing measured yet: no wait refused
    batcher.service_time = 0.1  # a call takes 0.1 s: two calls fit the wait, three do not
    assert batcher.refusal(1) is None  # nothing ahead: always served
    # an idle model admits: the estimate may be a past storm's, and only calls renew it
    assert batcher.refusal(1, ahead=4) is None
    batcher.service_time = 10.0  # however stale and inflated
    assert batcher.refusal(1, ahead=8) is None
    batcher.service_time = 0.1
    batcher.queued = 1  # a model with work at hand: 1 queued + 1 + ahead rows
    assert batcher.refusal(1, ahead=2) is None  # 4 rows: 2 calls
    assert "over the latency SLO" in batcher.refusal(1, ahead=3)  # 5 rows: 3 calls
    assert "at most 10 rows" in batcher.refusal(1, ahead=9)  # the queue would overflow


def test_http_limits_from_the_environment():
    assert HttpLimits.from_env({}) == HttpLimits()
    limits = HttpLimits.from_env({"MLC_HEADER_TIMEOUT_SECONDS": "2.5",
                                  "MLC_MAX_CONNECTIONS": "7", "MLC_KEEP_ALIVE_SECONDS": "3"})
    assert (limits.header_timeout, limits.max_connections, limits.keep_alive) == (2.5, 7, 3)
    options = limits.uvicorn_options("h11")
    # the protocol applies the limit, so that the app answers (and counts) the refusals
    assert options["limit_concurrency"] is None and options["timeout_keep_alive"] == 3


# --- the pods' shutdown budget -------------------------------------------------------------------

def _server_containers(spec: dict) -> list[dict]:
    return [c for c in spec["containers"] if "serve" in c.get("args", [])
            or "route" in c.get("args", [])]


def _check_budget(obj: dict, spec: dict) -> int:
    """The grace period a pod gets, checked against the steps of the server's shutdown as
    its container's environment sets them (read by the runtime's own settings code)."""
    checked = 0
    for c in _server_containers(spec):
        env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
        drain = float(env[pod.DRAIN_ENV])
        in_flight = float(env[pod.IN_FLIGHT_ENV])
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if obj["kind"] in ("Service", "Configuration") or (
                obj["kind"] == "InferenceService" and "terminationGracePeriodSeconds" not in spec):
            # Knative sets the pod's grace period to the revision's timeoutSeconds
            grace = spec.get("timeoutSeconds", KNATIVE_DEFAULT_REVISION_TIMEOUT)
        else:
            grace = spec["terminationGracePeriodSeconds"]
        assert grace >= pre_stop + drain + in_flight + pod.FLUSH_SECONDS, (obj["kind"], grace)
        assert drain > 0, "a server must keep accepting while its endpoints propagate"
        checked += 1
    return checked


def test_the_grace_period_covers_drain_in_flight_and_the_log_flush(tmp_path):
    checked = 0
    for env in ("dev", "staging", "prod"):
        built = example(env)
        for obj in built.objects():
            for spec in pod_specs(obj):
                checked += _check_budget(obj, spec)
    suite = build(tmp_path, ENDPOINTS, platform=KNATIVE_GPU_FLAGS)  # every form
    kinds = set()
    for obj in suite.objects():
        for spec in pod_specs(obj):
            n = _check_budget(obj, spec)
            checked += n
            if n:
                kinds.add(obj["kind"])
    assert {"Deployment", "Rollout", "Service", "InferenceService"} <= kinds, kinds
    assert checked > 10


def test_the_server_reads_the_budget_the_pod_sets(dev):  # noqa: F811
    env = {pod.DRAIN_ENV: str(pod.DRAIN_SECONDS), pod.IN_FLIGHT_ENV: str(pod.IN_FLIGHT_SECONDS)}
    s = settings_for_endpoint(dev, ENDPOINT, env=env)
    assert (s.drain_seconds, s.shutdown_timeout_seconds) == (pod.DRAIN_SECONDS,
                                                            pod.IN_FLIGHT_SECONDS)
    assert settings_for_endpoint(dev, ENDPOINT, env={}).drain_seconds > 0  # by default too
    assert s.latency_slo_seconds == dev.endpoints[ENDPOINT].slo.latency_seconds


# --- the real server ------------------------------------------------------------------------------

def _serve(tmp_path, dev, hidden, env, **endpoint):  # noqa: F811
    import mlflow

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    features = [r.field for r in dev.models["fraud-classifier"].features]
    version = _register(tmp_path / "model", tracking, "m", features, hidden)
    mlflow.MlflowClient(tracking).set_registered_model_alias("m", "champion", version)
    project = _with_endpoint(dev, prediction_log_sample=0.0, **endpoint)
    server = Server(tmp_path, project, {"MLFLOW_TRACKING_URI": tracking,
                                        "MLC_MODEL_URI": "models:/m@champion",
                                        "MLC_TORCH_THREADS": "1", **env})
    return server, {"instances": [{f: 1.0 for f in features}]}


def _served(server: Server, status: str) -> float:
    text = server.http.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mlc_requests_total{") and f'code="{status}"' in line
               and 'route="/predict"' in line)


def _durations(server: Server) -> dict[float, float]:
    """The server's own /predict latency histogram: bucket bound -> requests at or under it."""
    text = server.http.get("/metrics").text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("mlc_request_duration_seconds_bucket{") and 'route="/predict"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Whether the server closes `sock` before `deadline` (one bound for all the sockets, so
    that a server which never closes them fails the test in that time, not in N times it)."""
    sock.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, TimeoutError):
        return False


@pytest.mark.slow
def test_slow_headers_are_cut_off_and_connections_are_bounded(tmp_path, dev):  # noqa: F811
    n = 60
    server, body = _serve(tmp_path, dev, [8], {"MLC_HEADER_TIMEOUT_SECONDS": "2",
                                               "MLC_MAX_CONNECTIONS": "40"})
    sockets: list[socket.socket] = []
    try:
        server.wait("/v2/health/ready")
        server.http.close()  # its kept-alive connection would count towards the limit
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            if i % 2:  # half send the start of a request, half send nothing at all
                s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sockets.append(s)
        time.sleep(0.5)
        # past 40 connections uvicorn answers 503 at once rather than holding more work
        with httpx.Client(base_url=server.url, timeout=10) as c:
            over = c.post("/predict", json=body)
        assert over.status_code == 503, over.text
        # each slow socket is closed by the server once its header deadline passes
        # (the 20 s bound only stops a failing test; it is never what passes it)
        deadline = time.monotonic() + 20
        closed = [_closed_by_server(s, deadline) for s in sockets]
        assert all(closed), f"{closed.count(False)} of {n} slow connections still open"
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.post("/predict", json=body).status_code == 200  # room again
        server.http = httpx.Client(base_url=server.url, timeout=10)
    finally:
        for s in sockets:
            s.close()
        code = server.stop()
    assert code == 0, server.output()


@pytest.mark.slow
def test_overload_is_shed_with_503_before_latency_passes_the_slo(tmp_path, dev):  # noqa: F811
    clients = 200
    slo = 0.05
    # the queue (256 rows) holds every client's row: only the expected wait sheds
    server, body = _serve(
        tmp_path, dev, [4096, 4096], {},
        batching=ir.Batching(max_batch_size=4, max_latency_seconds=0.0, max_queue=256),
        slo=dev.endpoints[ENDPOINT].slo.model_copy(update={"latency_seconds": slo}))

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=httpx.Limits(
                max_connections=clients)) as client:
            async def one():
                start = time.perf_counter()
                r = await client.post("/predict", json=body)
                return r, time.perf_counter() - start
            # warm: service time measured (those queued behind the first, slow call may
            # pass their deadline: 503s too)
            warm = await asyncio.gather(*[one() for _ in range(20)])
            return warm, await asyncio.gather(*[one() for _ in range(clients)])

    try:
        server.wait("/v2/health/ready")
        before, seen = _served(server, "503"), _durations(server)
        warm, results = asyncio.run(burst())
        inside = {le: n - seen.get(le, 0) for le, n in sorted(_durations(server).items())}
        codes = [r.status_code for r, _ in results]
        shed = [r for r, _ in results if r.status_code == 503]
        accepted = sorted(t for r, t in results if r.status_code == 200)
        p99 = accepted[int(0.99 * (len(accepted) - 1))] if accepted else float("nan")
        print(f"\noverload: {clients} clients, {len(shed)} shed ({len(shed) / clients:.0%}), "
              f"p99 of the {len(accepted)} accepted {p99 * 1000:.0f} ms (SLO {slo * 1000:.0f} ms); "
              f"inside the server (200s and 503s), requests at or under each bound: {inside}")
        assert set(codes) <= {200, 503}, codes
        assert shed and accepted, codes
        assert all(r.headers["retry-after"] == "1" for r in shed)
        # refused on the expected wait, or admitted and past the deadline; past the refusal
        # rate, the minimal answer has no body
        assert all(not r.content or "latency SLO" in r.json()["error"] for r in shed)
        warm_shed = sum(1 for r, _ in warm if r.status_code == 503)
        assert {r.status_code for r, _ in warm} <= {200, 503}
        # every shed request counted
        assert _served(server, "503") - before == len(shed) + warm_shed
    finally:
        code = server.stop()
    assert code == 0, server.output()


@pytest.mark.slow
def test_sigterm_keeps_accepting_through_the_drain_then_closes(tmp_path, dev):  # noqa: F811
    drain = 3.0
    server, body = _serve(tmp_path, dev, [64], {"MLC_DRAIN_SECONDS": str(drain)})

    async def load():
        answers, errors, ready = [], [], []
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            async def sender(stop_at):
                while time.monotonic() < stop_at:
                    # a new connection each time, as a Service's late-routed client makes
                    try:
                        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
                            answers.append((await c.post("/predict", json=body)).status_code)
                    except httpx.TransportError as exc:
                        errors.append(exc)
                    await asyncio.sleep(0.02)
            warm = asyncio.gather(*[sender(time.monotonic() + 0.5) for _ in range(4)])
            await warm
            server.terminate()
            ready.append((await client.get("/v2/health/ready")).status_code)
            # keep sending for most of the drain: all of it must be answered
            await asyncio.gather(*[sender(time.monotonic() + drain * 0.6) for _ in range(4)])
        return answers, errors, ready

    try:
        server.wait("/v2/health/ready")
        answers, errors, ready = asyncio.run(load())
        print(f"\ndrain: {len(answers)} answered ({answers.count(200)} x 200), "
              f"{len(errors)} transport errors")
        assert ready == [503]  # readiness false at once: the Service stops routing here
        assert not errors, errors  # never connection refused during the drain
        assert set(answers) == {200}
    finally:
        code = server.stop()
    assert code == 0, server.output()
    with pytest.raises(httpx.TransportError):  # and after it, the listener is closed
        httpx.get(f"{server.url}/v2/health/live", timeout=2)


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_the_header_deadline_on_both_of_uvicorns_http_layers(http):
    """Each layer on its own (the server process uses httptools where installed): partial
    headers are cut off, on a new connection and on a kept-alive one; a whole request is
    answered, however long the app takes after its headers."""
    import threading

    import uvicorn

    pytest.importorskip(http)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await asyncio.sleep(1.5)  # longer than the deadline: the deadline is for headers only
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = HttpLimits(header_timeout=1.0, keep_alive=30).uvicorn_options(http)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the server never started"
            time.sleep(0.05)
        silent = socket.create_connection(("127.0.0.1", port))
        partial = socket.create_connection(("127.0.0.1", port))
        partial.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        kept = socket.create_connection(("127.0.0.1", port))
        kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        kept.settimeout(10)
        assert kept.recv(1024).endswith(b"ok")  # answered after 1.5 s: headers were in time
        kept.sendall(b"GET / HTTP/1.1\r\nHo")  # the next request on it starts, stalls
        deadline = time.monotonic() + 10
        assert [_closed_by_server(s, deadline) for s in (silent, partial, kept)] == [True] * 3
        for s in (silent, partial, kept):
            s.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
