"""Admission by the latency SLO, the deadline of an admitted request, and the refusal rate:
the batcher and the refusal limit on their own, then mlc's real server process
(tests/sleepy_server.py: ServeApp on uvicorn, with its protocol layer) around a model that
sleeps, so that a test makes the model busy exactly when it needs to, on any machine.

Pass/fail rests on status codes, headers, counters and what the model computed, never on a
latency; the sleeps only order events, with margins far wider than a loaded CI needs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlc import metrics as contract
from mlc.runtime.serve import admission
from mlc.runtime.serve.batching import HEADROOM_CUT, HEADROOM_STEP, Batcher, Expired
from mlc.runtime.serve.settings import RefusalRate

from . import storm_clients
from .sleepy_server import SLOW_VALUE

ROOT = Path(__file__).resolve().parents[1]
SLO = 0.2
FAST = 0.02  # seconds per model call
SLOW = 0.8  # seconds for a call with a row at SLOW_VALUE: four times the SLO
RATE, BURST = 40, 5  # refusals answered in full per second, and at once


# --- the batcher -------------------------------------------------------------------------------

def _sleepy(computed: list[float]):
    def run(rows: np.ndarray) -> np.ndarray:
        time.sleep(SLOW if rows[:, 0].max() >= SLOW_VALUE else FAST)
        computed.extend(rows[:, 0].tolist())
        return rows[:, 0]
    return run


def test_a_request_admitted_behind_a_slow_call_expires_instead_of_being_computed():
    computed: list[float] = []

    async def scenario():
        batcher = Batcher(_sleepy(computed), max_batch_size=1, max_latency=0.0, max_queue=10,
                          max_wait=SLO)
        batcher.start()
        for _ in range(3):  # a call measured at about FAST
            await batcher.submit(np.array([[1.0]]))
        slow = asyncio.ensure_future(batcher.submit(np.array([[SLOW_VALUE]])))
        await asyncio.sleep(0.1)  # the slow call is running, past what a call takes
        # admitted: what is left of the running call (measured: about 0) and its own call
        # fit the SLO...
        assert batcher.refusal(1) is None
        with pytest.raises(Expired):  # ...but the call runs on, past its deadline
            await batcher.submit(np.array([[2.0]]))
        await slow  # found the model idle: computed however late
        cut = batcher.headroom  # an expiry: admission grants less of the SLO...
        for _ in range(3):
            await batcher.submit(np.array([[3.0]]))
        regained = batcher.headroom  # ...and regains it as batches keep their deadlines
        await batcher.close()
        return batcher.expired, batcher.shed, cut, regained

    expired, shed, cut, regained = asyncio.run(scenario())
    assert (expired, shed) == (1, 0)
    assert cut == HEADROOM_CUT and HEADROOM_CUT < regained <= HEADROOM_CUT + 3 * HEADROOM_STEP
    assert computed == [1.0, 1.0, 1.0, SLOW_VALUE, 3.0, 3.0, 3.0]  # 2.0 never reached it


def test_the_deadline_counts_a_slow_call_not_the_median_one():
    """Three calls in fifteen take 0.4 s, the rest 0.02 s: admission may count the median
    call, but a request queued behind a 0.4 s call whose deadline a median call would still
    meet (0.42 s < 0.6 s) is late after each slow one. It expires instead of being computed
    late (the deadline counts DEADLINE_QUANTILE of the recent calls)."""
    computed: list[float] = []
    slo, slow = 0.6, 0.4

    def run(rows: np.ndarray) -> np.ndarray:
        time.sleep(slow if rows[:, 0].max() >= 5.0 else FAST)
        computed.extend(rows[:, 0].tolist())
        return rows[:, 0]

    async def scenario():
        batcher = Batcher(run, max_batch_size=1, max_latency=0.0, max_queue=10, max_wait=slo)
        batcher.start()
        for value in [1.0] * 6 + [5.0] + [1.0] * 3 + [5.0] + [1.0] * 3 + [5.0]:
            await batcher.submit(np.array([[value]]))  # one at a time: no deadlines
        assert batcher.service_time < slow / 2  # the median call is a fast one
        running = asyncio.ensure_future(batcher.submit(np.array([[5.0]])))
        await asyncio.sleep(0.01)  # the 0.4 s call has started
        assert batcher.refusal(1) is None  # admitted: the median call fits the SLO
        with pytest.raises(Expired):
            await batcher.submit(np.array([[2.0]]))
        await running
        await batcher.close()
        return batcher.expired

    assert asyncio.run(scenario()) == 1
    assert 2.0 not in computed


def test_a_model_slower_than_the_slo_keeps_no_deadline():
    computed: list[float] = []

    async def scenario():
        batcher = Batcher(_sleepy(computed), max_batch_size=1, max_latency=0.0, max_queue=10,
                          max_wait=FAST / 2)  # no call of this model fits
        batcher.start()
        # nothing measured yet, so both are admitted; the second queues behind the first,
        # which takes twice its SLO
        first = asyncio.ensure_future(batcher.submit(np.array([[2.0]])))
        await asyncio.sleep(0.005)
        second = asyncio.ensure_future(batcher.submit(np.array([[3.0]])))
        await asyncio.gather(first, second)
        await batcher.close()
        return batcher.expired

    assert asyncio.run(scenario()) == 0
    assert computed == [2.0, 3.0]


def test_retry_after_is_the_drain_time_rounded_up():
    batcher = Batcher(lambda rows: rows[:, 0], max_batch_size=2, max_latency=0.0,
                      max_queue=100, max_wait=SLO)
    assert batcher.retry_after() == 1  # nothing measured, nothing queued: at least 1
    batcher.service_time, batcher.queued = 0.5, 9  # 5 calls of 0.5 s
    assert batcher.drain_time() == 2.5 and batcher.retry_after() == 3
    batcher.queued = 1
    assert batcher.retry_after() == 1


# --- the refusal limit -------------------------------------------------------------------------

class _Transport:
    """What RefusalLimit uses of an asyncio transport, recorded."""

    def __init__(self):
        self.written, self.closed, self.paused = b"", False, False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True


def test_past_the_burst_refusals_are_parked_and_answered_at_the_rate():
    async def scenario():
        limit = admission.RefusalLimit(RefusalRate(rate=1000.0, burst=2, max_parked=3),
                                       lambda: 7)
        assert limit.take() and limit.take()  # the burst
        assert not limit.take()
        parked = [_Transport() for _ in range(5)]
        for t in parked:
            limit.park(t)
        # three held, unread; the two past max_parked answered at once
        assert [t.paused for t in parked] == [True] * 3 + [False] * 2
        assert [t.closed for t in parked] == [False] * 3 + [True] * 2
        assert limit.parked == 3 and not limit.take()  # the parked go first
        parked[1].close()  # a client that gave up: skipped, no token spent on it
        deadline = time.monotonic() + 30  # bounds a failing run only
        while limit.parked and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return limit, parked

    limit, parked = asyncio.run(scenario())
    assert limit.limited == 5 and limit.parked == 0
    answer = admission.minimal_answer(7)
    assert [t.written for t in parked] == [answer, b"", answer, answer, answer]
    assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 7\r\n" in answer
    assert answer.endswith(b"content-length: 0\r\n\r\n") and b"connection: close" in answer


def test_refusal_rate_from_the_environment():
    assert RefusalRate.from_env({}) == RefusalRate()
    rate = RefusalRate.from_env({"MLC_REFUSAL_RATE": "50", "MLC_REFUSAL_BURST": "5",
                                 "MLC_REFUSAL_MAX_PARKED": "9"})
    assert (rate.rate, rate.burst, rate.max_parked) == (50.0, 5, 9)
    with pytest.raises(ValueError, match="MLC_REFUSAL_RATE"):
        RefusalRate.from_env({"MLC_REFUSAL_RATE": "0"})


# --- the real server ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SleepyServer:
    def __init__(self, tmp: Path):
        self.port = _free_port()
        self.calls = tmp / "calls.txt"
        self.log = open(tmp / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "sleepy_server.py"), str(self.port),
             str(self.calls), str(SLO), str(FAST), str(SLOW), str(RATE), str(BURST)],
            env={**os.environ, "PYTHONPATH": str(ROOT), "MLC_DRAIN_SECONDS": "0"},
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if self.http.get("/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not ready: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def computed(self) -> list[float]:
        return [float(v) for line in self.calls.read_text().split() for v in line.split()]

    def counters(self) -> tuple[dict[str, float], dict[str, float]]:
        """(rejections by reason, /predict requests by code)."""
        rejected, requests = {}, {}
        for line in self.http.get("/metrics").text.splitlines():
            value = float(line.rsplit(" ", 1)[1]) if line[:1] != "#" else 0.0
            if line.startswith(contract.REJECTED.name + "{"):
                rejected[line.split('reason="', 1)[1].split('"', 1)[0]] = value
            elif (line.startswith("mlc_requests_total{")
                  and f'route="{contract.PREDICT_ROUTE}"' in line):
                code = line.split('code="', 1)[1].split('"', 1)[0]
                requests[code] = requests.get(code, 0) + value
        return rejected, requests

    def stop(self) -> int:
        self.http.close()
        self.proc.terminate()
        code = self.proc.wait(timeout=60)
        self.log.close()
        return code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = SleepyServer(tmp_path_factory.mktemp("serve-deadline"))
    try:
        srv.wait_ready()
        for _ in range(5):  # the batcher measures a call: about FAST
            assert srv.http.post("/predict", json={"instances": [{"x": 1.0}]}).status_code == 200
        yield srv
    finally:
        code = srv.stop()
    assert code == 0, srv.output()


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_the_server_answers_503_to_an_admitted_request_whose_deadline_passed(server):
    before = server.counters()
    answers = {}

    def post(name: str, x: float) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            answers[name] = c.post("/predict", json={"instances": [{"x": x}]})

    slow = threading.Thread(target=post, args=("slow", SLOW_VALUE))
    slow.start()
    time.sleep(0.1)  # the slow call runs (0.8 s, four times the SLO)
    post("late", 2.0)  # admitted (the model measured fast), then expired in the queue
    slow.join(30)
    late, first = answers["late"], answers["slow"]
    assert first.status_code == 200, first.text  # it found the model idle
    assert late.status_code == 503, late.text
    assert "latency SLO (0.2s) passed before the model reached the request" in late.text
    assert int(late.headers["retry-after"]) >= 1 and late.headers["connection"] == "close"
    assert late.headers["x-request-id"]
    assert 2.0 not in server.computed()  # answered, not computed
    rejected, requests = (_delta(a, b) for a, b in zip(server.counters(), before, strict=True))
    assert rejected == {"deadline": 1} and requests == {"200": 1, "503": 1}


def test_a_storm_is_shed_with_503_and_its_refusals_held_to_the_rate(server):
    """Clients that ignore Retry-After, far more than the model serves within the SLO: every
    answer is a 200 or a 503 with Retry-After, every request the server took is answered,
    and past the refusal rate the refusals are the minimal, bodiless 503 (counted)."""
    before = server.counters()
    payload = storm_clients.request("/predict", b'{"instances": [{"x": 1.0}]}')
    started = time.monotonic()
    answers = storm_clients.run(server.port, payload, 60, 1.5)
    elapsed = time.monotonic() - started
    rejected, requests = (_delta(a, b) for a, b in zip(server.counters(), before, strict=True))
    print(f"\n60 clients for {elapsed:.1f} s: {answers.count(200)} x 200, "
          f"{answers.count(503)} x 503 ({answers.bodiless} minimal); rejected {rejected}")
    assert answers.codes <= {200, 503}, answers.codes
    assert answers.unanswered == 0 and answers.refused == 0
    assert answers.count(200) > 0 and answers.count(503) > 0
    assert all(retry is not None and int(retry) >= 1 and close
               for status, retry, close in answers.seen if status == 503)
    # what the clients saw is what the server counted, reason by reason
    assert requests == {"200": answers.count(200), "503": answers.count(503)}
    assert sum(rejected.values()) == answers.count(503)
    assert set(rejected) <= {"overload", "refusal_limit", "deadline"}
    assert rejected.get("refusal_limit", 0) == answers.bodiless > 0
    # the full refusals made in the protocol are the bucket's: its burst and its rate
    # (`overload` also counts the few refused after their headers were parsed)
    assert rejected["overload"] > 0
    assert server.proc.poll() is None
