"""The shadow mirror off the primary's loop: the real primary, its mirror sender process and
the real shadow, as processes (tests/mirror_stand_in.py: the real server, a stand-in model).

One primary (30 % mirrored) and one shadow serve the whole module, in order: the share
arrives and is compared; a killed sender is restarted while the primary answers every
request; SIGTERM drains the primary and its sender, and the shadow's log holds every copy
under the primary's request id. The hand-over on its own (a stuck shadow, a full socket, a
copy too large) runs the real sender against a shadow that never answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlc.runtime.prediction_log import PREDICTION_COLUMN, REQUEST_ID_COLUMN, read_log
from mlc.runtime.serve import mirror_counts as mc
from mlc.runtime.serve import request_id
from mlc.runtime.serve.mirror_sender import unpack
from mlc.runtime.serve.settings import MirrorSettings
from mlc.runtime.serve.shadow import SCHEDULING_ENV, ShadowMirror, ShadowStats, sampled

from .mirror_stand_in import FEATURES, score
from .test_serve import _free_port

HERE = Path(__file__).resolve().parent
PERCENT = 30
SHADOW_OFFSET = 0.4  # the shadow's model: another threshold, so they agree on some rows only


class Server:
    def __init__(self, tmp: Path, role: str, *args: str, env: dict[str, str] | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = tmp / f"{role}.log"
        env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(
            [str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "mirror_stand_in.py"), "--role", role, "--port",
             str(self.port), *args], env=env, stdout=subprocess.DEVNULL,
            stderr=open(self.output, "wb"))
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None and time.time() < deadline, self.log()
            time.sleep(0.05)

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def metrics(self) -> dict:
        text = httpx.get(self.url + "/metrics", timeout=5).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    def total(self, name: str, **labels) -> float:
        return sum(v for (n, ls), v in self.metrics().items()
                   if n == name and labels.items() <= dict(ls).items())

    def children(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mirror")
    shadow = Server(tmp, "shadow", "--log", str(tmp / "shadow-log"),
                    "--offset", str(SHADOW_OFFSET))
    # every copy is counted below, on a machine the test run keeps busy: the sender takes
    # its share of the CPU (by default it takes only idle time, and drops when it gets none)
    primary = Server(tmp, "primary", "--mirror", shadow.url, "--percent", str(PERCENT),
                     env={SCHEDULING_ENV: "normal"})
    sent: dict[str, np.ndarray] = {}  # request id -> row, every request this module sent
    yield primary, shadow, sent, tmp
    for server in (primary, shadow):
        if server.proc.poll() is None:
            server.stop()


def _post(client: httpx.Client, rid: str, row: np.ndarray) -> httpx.Response:
    body = {"instances": [dict(zip(FEATURES, row.tolist(), strict=True))]}
    return client.post("/predict", content=json.dumps(body),
                       headers={request_id.HEADER: rid, "content-type": "application/json"})


def _settled(primary: Server, timeout: float = 20) -> dict:
    """The primary's metrics once every copy handed over is answered or dropped."""
    deadline = time.time() + timeout
    while True:
        m = primary.metrics()
        mirrored = sum(v for (n, _), v in m.items() if n == "mlc_shadow_mirrored_total")
        done = sum(v for (n, _), v in m.items()
                   if n in ("mlc_shadow_responses_total", "mlc_shadow_dropped_total"))
        if done == mirrored:
            return m
        assert time.time() < deadline, (mirrored, done)
        time.sleep(0.1)


def _value(m: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in m.items() if n == name and labels.items() <= dict(ls).items())


def test_the_share_arrives_and_is_compared(servers):
    primary, shadow, sent, _ = servers
    rows = np.random.default_rng(3).normal(scale=0.5, size=(600, len(FEATURES))).round(4)
    with httpx.Client(base_url=primary.url, timeout=10) as client:
        for i, row in enumerate(rows):
            rid = f"share-{i}"
            answer = _post(client, rid, row)
            assert answer.status_code == 200 and answer.headers[request_id.HEADER] == rid
            sent[rid] = row
    mirrored_ids = [rid for rid in sent if sampled(rid, PERCENT)]
    assert abs(len(mirrored_ids) / len(sent) - PERCENT / 100) < 0.08  # 4.3 sd of 600 draws
    m = _settled(primary)
    assert _value(m, "mlc_shadow_mirrored_total", endpoint="ep") == len(mirrored_ids)
    assert _value(m, "mlc_shadow_responses_total", code="200") == len(mirrored_ids)
    assert _value(m, "mlc_shadow_dropped_total") == 0
    assert shadow.total("mlc_requests_total", route="/predict", code="200") == len(mirrored_ids)
    # the sender's comparison, on the primary's /metrics: exactly what the two models give
    x = np.array([sent[rid] for rid in mirrored_ids])
    same = (score(x, 0.0) >= 0.5) == (score(x, SHADOW_OFFSET) >= 0.5)
    assert _value(m, "mlc_shadow_compared_total") == len(mirrored_ids)
    assert _value(m, "mlc_shadow_agreed_total") == int(same.sum())
    assert 0 < same.sum() < len(same)
    assert _value(m, "mlc_shadow_prediction_value_count", role="shadow") == len(mirrored_ids)
    assert _value(m, "mlc_shadow_duration_seconds_count") == len(mirrored_ids)
    assert _value(m, "mlc_shadow_sender_restarts_total") == 0
    # the shadow logged each copy under the primary's request id, and nothing else
    deadline = time.time() + 10
    while True:
        log = read_log(str(servers[3] / "shadow-log"))
        if len(log) >= len(mirrored_ids) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert sorted(log[REQUEST_ID_COLUMN]) == sorted(mirrored_ids)
    logged = dict(zip(log[REQUEST_ID_COLUMN], log[PREDICTION_COLUMN], strict=True))
    assert np.allclose([logged[r] for r in mirrored_ids], score(x, SHADOW_OFFSET))


def test_a_killed_sender_is_restarted_and_the_primary_answers_throughout(servers):
    primary, shadow, sent, _ = servers
    [sender] = primary.children()
    statuses: list[int] = []
    stop = threading.Event()
    rows = np.random.default_rng(4).normal(size=(100_000, len(FEATURES))).round(4)

    def load() -> None:
        with httpx.Client(base_url=primary.url, timeout=10) as client:
            for i, row in enumerate(rows):
                if stop.is_set():
                    return
                rid = f"kill-{i}"
                statuses.append(_post(client, rid, row).status_code)
                sent[rid] = row

    driver = threading.Thread(target=load)
    driver.start()
    try:
        time.sleep(0.3)
        os.kill(sender, signal.SIGKILL)
        deadline = time.time() + 15
        while True:  # a new sender, and copies reaching the shadow through it
            restarted = [p for p in primary.children() if p != sender]
            if restarted and primary.total("mlc_shadow_sender_restarts_total") == 1:
                break
            assert time.time() < deadline, primary.log()
            time.sleep(0.05)
        arrived = shadow.total("mlc_requests_total", code="200")
        while shadow.total("mlc_requests_total", code="200") <= arrived + 20:
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        driver.join()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    m = _settled(primary)
    mirrored = _value(m, "mlc_shadow_mirrored_total")
    assert mirrored == sum(sampled(rid, PERCENT) for rid in sent)
    answered = _value(m, "mlc_shadow_responses_total")
    lost = _value(m, "mlc_shadow_dropped_total", reason="sender_exit")
    assert answered + lost == mirrored and answered > 0
    assert _value(m, "mlc_shadow_sender_restarts_total") == 1
    assert "the mirror sender exited" in primary.log()
    print(f"\nsender killed during {len(statuses)} requests: all 200; "
          f"{lost:.0f} copies lost with it, {answered:.0f} answered")


def test_sigterm_drains_the_primary_and_its_sender(servers):
    primary, shadow, sent, tmp = servers
    [sender] = primary.children()
    rows = np.random.default_rng(5).normal(size=(200, len(FEATURES))).round(4)
    with httpx.Client(base_url=primary.url, timeout=10) as client:
        for i, row in enumerate(rows):
            rid = f"drain-{i}"
            assert _post(client, rid, row).status_code == 200
            sent[rid] = row
    assert primary.stop() == 0, primary.log()  # at once, copies possibly still in flight
    deadline = time.time() + 10
    while Path(f"/proc/{sender}").exists():
        stat = Path(f"/proc/{sender}/stat").read_text() if Path(f"/proc/{sender}").exists() \
            else ""
        if ") Z " in stat:
            break  # exited, waiting to be reaped by init
        assert time.time() < deadline, "the sender outlived its primary"
        time.sleep(0.05)
    assert shadow.stop() == 0, shadow.log()
    logged = set(read_log(str(tmp / "shadow-log"))[REQUEST_ID_COLUMN])
    drained = {rid for rid in sent if rid.startswith("drain-") and sampled(rid, PERCENT)}
    assert drained <= logged  # every copy handed over before SIGTERM was still sent
    assert logged <= {rid for rid in sent if sampled(rid, PERCENT)}


# --- the hand-over on its own --------------------------------------------------------------------

def test_a_stuck_shadow_fills_the_handover_and_every_drop_is_counted():
    """The shadow accepts connections and never answers: each offer still returns at once;
    the sender holds max_queue copies (and one per worker in flight), the socket a few more,
    and every copy beyond is dropped and counted; at shutdown what is held is counted too."""

    async def scenario():
        async def hang(reader, writer):
            await asyncio.sleep(3600)

        server = await asyncio.start_server(hang, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stats = ShadowStats("ep", mirroring=True)
        settings = MirrorSettings(url=f"http://127.0.0.1:{port}", percent=100,
                                  task="classification", tolerance=0.0, max_queue=16,
                                  timeout_seconds=30.0)
        mirror = ShadowMirror(settings, stats, handover_bytes=16 * 1024, close_seconds=0.3)
        await mirror.start()
        body, answer = b'{"instances": [{"a": 1}]}', b'{"predictions": [0.5]}'
        slowest = 0.0
        for i in range(3000):
            start = time.perf_counter()
            mirror.offer(f"r{i}", b"/predict", body, answer)
            slowest = max(slowest, time.perf_counter() - start)
            if i % 100 == 0:
                await asyncio.sleep(0.02)  # the sender takes what it can
        too_large = mirror.offer("big", b"/predict", b"x" * mirror.max_message, answer)
        handed_over = stats.mirrored
        sender = mirror.process
        # the sender sets its policy before it says it is ready (a busy machine may start it
        # after the offers above)
        for _ in range(1000):
            if stats.counts.array[mc.READY] == sender.pid:
                break
            await asyncio.sleep(0.01)
        policy = os.sched_getscheduler(sender.pid)
        await mirror.close()
        server.close()
        return stats, handed_over, slowest, too_large, sender.returncode, policy

    os.environ.pop(SCHEDULING_ENV, None)
    stats, handed_over, slowest, too_large, code, policy = asyncio.run(scenario())
    assert policy == os.SCHED_IDLE  # by default the sender runs on idle CPU time only
    assert code == 0  # the sender drained (for close_seconds) and exited
    assert not too_large and stats.dropped["too_large"] == 1
    full = stats.dropped["queue_full"]
    assert full > 0 and handed_over + full == 3000
    # the sender held max_queue + one per worker + the one waiting to be queued; the socket
    # the rest of what was handed over
    assert handed_over > 16
    counted = {reason: v for (name, labels), v in _samples(stats).items()
               if name == "mlc_shadow_dropped_total" for reason in [dict(labels)["reason"]]}
    assert counted == {"queue_full": full, "sender_exit": 0, "shutdown": handed_over,
                       "too_large": 1}
    print(f"\nslowest offer to a stuck shadow: {slowest * 1e6:.0f} us; {handed_over} handed "
          f"over, {full} dropped at the hand-over")


def test_copies_a_killed_sender_took_uncounted_are_found_and_the_rest_kept_in_order():
    """A sender killed between taking a copy from the socket and counting it as received
    leaves the copy nowhere: the primary finds how many (handed over, minus received, minus
    what the socket still holds) while no sender runs, and puts the socket's copies back in
    their order for the next sender."""

    async def scenario():
        stats = ShadowStats("ep", mirroring=True)
        settings = MirrorSettings(url="http://127.0.0.1:9", percent=100, task="classification",
                                  tolerance=0.0, max_queue=16, timeout_seconds=1.0)
        mirror = ShadowMirror(settings, stats)  # not started: the test is the sender
        for i in range(10):
            assert mirror.offer(f"r{i}", b"/predict", b"{}", b"{}")
        theirs = mirror._theirs
        for _ in range(3):  # taken and counted (then the sender died holding them)
            theirs.recv(65536)
            stats.counts.array[mc.RECEIVED] += 1
        theirs.recv(65536)  # taken, killed before it counted it
        theirs.recv(65536)  # and one more
        stats.sender_died(mirror._vanished())
        left = [theirs.recv(65536) for _ in range(5)]
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(65536)
        first = stats.dropped["sender_exit"]
        # a second death with nothing lost in between adds nothing
        stats.counts.array[mc.RECEIVED] += 5
        stats.sender_died(mirror._vanished())
        return left, first, stats.dropped["sender_exit"], stats.restarts

    left, first, second, restarts = asyncio.run(scenario())
    assert [unpack(m)[0] for m in left] == [f"r{i}" for i in range(5, 10)]
    assert first == 3 + 2  # the three it held (writer_gone) and the two it took uncounted
    assert second == first + 5 and restarts == 2  # the five the next one received, then lost


def _samples(stats: ShadowStats) -> dict:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(stats)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(generate_latest(registry).decode())
            for s in f.samples}
