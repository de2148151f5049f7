"""Serving under overload: goodput under a storm beside goodput without one, the latency of
the answered 200s and of the 503s at the server and at the client, and memory over 10k
requests; this tree's server side by side with another's (`--baseline /work/main`).

    python bench/bench_serve_overload.py [--clients 200] [--duration 5] [--modes ...]
        [--baseline /work/main] [--repeat 3] [--phases storm,memory,slow]

Builds a torch model slow enough to overload (30 inputs, hidden layers 1024 and 1024; the
helpers of bench_serve.py), serves it with mlc's server (batches of 4, a 50 ms latency SLO)
and drives it on 127.0.0.1 with keep-alive connections in a closed loop that ignore
Retry-After, from this process (a raw asyncio client: far cheaper per request than an HTTP
library). With two CPUs or more the client runs on one CPU and the server (with its model
process) on the others, as clients elsewhere would (`--no-pin`: all share every CPU). Each
mode is a fresh server:

  process     the model in a process of its own (the default), refusals in the protocol
  thread      the model in a thread of the server (MLC_MODEL_PROCESS=0)
  thread-app  a thread, and every refusal answered by the ASGI app on the kept-alive
              connection: the server as it was before refuse_early

Each tree's server (this one, and `--baseline`'s: its own `mlc` on PYTHONPATH, run by this
script) is measured in turn, `--repeat` times interleaved, and in each:

  saturation  `--saturation-clients` connections for `--duration` s: the storm-free goodput;
  storm       `--clients` connections for `--duration` s: goodput, 503s, latency of 503s and
              200s as the client sees them and as the server does (`server`: from the
              moment a request's first bytes are read to the moment its answer's head is
              written, by a wrapper of the server's HTTP protocol that this script adds,
              the same for every tree), and the model's CPU share (its process, or the
              whole server in thread modes);
  memory      the server's RSS (with its model process) after a warm-up, then after 10,000
              more requests: valid, malformed (bad JSON, wrong shapes and types, oversized)
              and overload bursts;
  slow        20 connections that send their body a byte a second: each must get its 408 at
              the body deadline (2 s here).

The server is stopped by pid; everything lives in a temp folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_serve import (
    MODEL,
    build_model,
    free_port,
    http_request,
    register,
    response_head,
    stop,
    wait_http,
)

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = [1024, 1024]
SLO = 0.05
BODY_TIMEOUT = 2
MALFORMED = [b"{", b"[]", b'{"instances": 5}', b'{"instances": [{"f00": "x"}]}',
             b'{"instances": [[1, 2]]}', b"\xff\xfe", b'{"instances": [{}]}',
             b'{"inputs": [{"name": ["a"], "datatype": {}, "shape": [1], "data": [1]}]}']


SERVER_TIMES = b"GET /bench/server-times "  # the latencies the server saw, since last asked


def timed_protocol(base: type) -> type:
    """`base` (the server's HTTP protocol) that records, for every answer, its status and the
    seconds from the first bytes of its request to the write of its head; `GET
    /bench/server-times` answers them (JSON pairs) and forgets them."""
    import time as clock

    seen: list[tuple[int, float]] = []

    class Transport:
        def __init__(self, transport):
            self._t, self.t0 = transport, None

        def write(self, data) -> None:
            if self.t0 is not None and data[:9] == b"HTTP/1.1 ":
                seen.append((int(data[9:12]), clock.perf_counter() - self.t0))
                self.t0 = None
            self._t.write(data)

        def __getattr__(self, name):
            return getattr(self._t, name)

    class Timed(base):
        def connection_made(self, transport) -> None:
            super().connection_made(Transport(transport))

        def data_received(self, data: bytes) -> None:
            if data.startswith(SERVER_TIMES):
                body = json.dumps(seen).encode()
                seen.clear()
                self.transport._t.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n"
                                        b"content-length: %d\r\n\r\n%s" % (len(body), body))
                self.transport._t.close()
                return
            if self.transport.t0 is None:
                self.transport.t0 = clock.perf_counter()
            super().data_received(data)

    return Timed


def serve(tracking_uri: str, port: int, mode: str) -> None:
    """`mode`: where the model runs (process, thread) and, with `-app`, refusals answered by
    the ASGI app alone, keep-alive (how the server refused before refuse_early)."""
    import importlib.util
    import logging

    from mlc.runtime.serve.connections import HttpLimits
    from mlc.runtime.serve.server import ServeApp, ServeSettings, make_server

    logging.basicConfig(level=logging.WARNING)
    # a runtime from before the body deadline (for a comparison run) lacks the setting
    options = {"body_timeout_seconds": BODY_TIMEOUT} \
        if "body_timeout_seconds" in ServeSettings.__dataclass_fields__ else {}
    if "model_process" in ServeSettings.__dataclass_fields__:
        options["model_process"] = mode.startswith("process")
    if "refusal_rate" in ServeSettings.__dataclass_fields__:  # MLC_REFUSAL_RATE and the rest
        from mlc.runtime.serve.settings import RefusalRate

        options["refusal_rate"] = RefusalRate.from_env()
    settings = ServeSettings(endpoint="bench", model_uri=f"models:/{MODEL}@production",
                             tracking_uri=tracking_uri, model_names=(MODEL,),
                             max_batch_size=4, max_latency=0.0, max_queue=256,
                             latency_slo_seconds=SLO, model_thread=True,
                             max_body_bytes=64 * 1024, **options)
    app = ServeApp(settings)
    if mode.endswith("-app"):
        app.refuse_early = None
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    protocol = timed_protocol(HttpLimits.from_env().uvicorn_options(http)["http"])
    make_server(app, "127.0.0.1", port, log_level="warning", http=protocol).run()


class Client(asyncio.Protocol):
    """One keep-alive connection in a closed loop over `requests` (in turn): each answer's
    status and latency go to `seen`."""

    def __init__(self, requests: list[bytes], seen: list, budget: list[int],
                 done: asyncio.Future):
        self.requests, self.seen, self.budget, self.done = requests, seen, budget, done
        self.i, self.buffer, self.need, self.sent, self.transport = 0, b"", None, 0.0, None
        self.waiting = False

    def connection_made(self, transport):
        self.transport = transport
        self._send()

    def _send(self):
        if self.budget[0] <= 0:
            self.transport.close()
            return
        self.budget[0] -= 1
        self.buffer, self.need = b"", None
        self.sent = time.perf_counter()
        self.waiting = True
        self.transport.write(self.requests[self.i % len(self.requests)])
        self.i += 1

    def data_received(self, data: bytes):
        self.buffer += data
        while True:
            if self.need is None:
                parsed = response_head(self.buffer)
                if parsed is None:
                    return
                self.status, self.need, head = parsed
                self.closing = b"connection: close" in head
            if len(self.buffer) < self.need:
                return
            self.seen.append((self.status, time.perf_counter() - self.sent))
            self.waiting = False
            self.buffer = self.buffer[self.need:]
            self.need = None
            if self.closing:
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc):
        if self.waiting:  # closed by the server without an answer (status -1)
            self.seen.append((-1, time.perf_counter() - self.sent))
            self.waiting = False
        if not self.done.done():
            self.done.set_result(None)


async def drive(port: int, requests: list[bytes], clients: int, total: int | None = None,
                duration: float | None = None) -> list[tuple[int, float]]:
    """`clients` connections until `total` requests are sent or `duration` passes; a
    connection the server closes is opened again."""
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, float]] = []
    budget = [total if total is not None else 1 << 60]
    refused = 0  # connections refused at the TCP level (counted as status 0)
    end = time.monotonic() + duration if duration else None

    async def one():
        while budget[0] > 0 and (end is None or time.monotonic() < end):
            done = loop.create_future()
            try:
                transport, client = await loop.create_connection(
                    lambda done=done: Client(requests, seen, budget, done), "127.0.0.1", port)
            except OSError:
                nonlocal refused
                refused += 1
                await asyncio.sleep(0.05)
                continue
            if end is None:
                await done
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(done), max(end - time.monotonic(), 0))
                except TimeoutError:
                    client.waiting = False  # the run is over: not the server's doing
                    transport.close()
                    await done
    await asyncio.gather(*[one() for _ in range(clients)])
    seen.extend((0, 0.0) for _ in range(refused))
    return seen


async def slow_bodies(port: int, n: int) -> list[tuple[int, float]]:
    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n")
        start = time.perf_counter()
        status = 0
        for _ in range(60):
            try:
                line = await asyncio.wait_for(reader.readline(), 1.0)
                status = int(line.split()[1]) if line else -1
                break
            except TimeoutError:
                writer.write(b" ")
        writer.close()
        return status, time.perf_counter() - start
    return await asyncio.gather(*[one() for _ in range(n)])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1),
            "max_ms": round(float(a.max()), 1)}


def summary(seen: list[tuple[int, float]], duration: float | None = None) -> dict:
    codes: dict[int, int] = {}
    for status, _ in seen:
        codes[status] = codes.get(status, 0) + 1
    rate = {"goodput_per_s": round(codes.get(200, 0) / duration, 1)} if duration else {}
    return {"requests": len(seen), "codes": dict(sorted(codes.items())), **rate,
            "503": percentiles([t for s, t in seen if s == 503]),
            "200": percentiles([t for s, t in seen if s == 200])}


def server_times(port: int) -> list[tuple[int, float]]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(SERVER_TIMES + b"HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    return [tuple(x) for x in json.loads(data.split(b"\r\n\r\n", 1)[1])]


def server_summary(seen: list[tuple[int, float]], duration: float) -> dict:
    """The server's view: latencies of 200s and 503s, and the goodput that counts, 200s
    answered within the SLO."""
    within = sum(1 for s, t in seen if s == 200 and t <= SLO)
    return {"503": percentiles([t for s, t in seen if s == 503]),
            "200": percentiles([t for s, t in seen if s == 200]),
            "200_within_slo": round(within / max(1, sum(1 for s, _ in seen if s == 200)), 4),
            "slo_goodput_per_s": round(within / duration, 1)}


def counters(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("mlc_rejected_requests_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and its children: the server and its model."""
    total = 0.0
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(c) for c in (task / "children").read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def model_pid(pid: int) -> int | None:
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    return None


def tree_rss_mb(pid: int) -> float:
    child = model_pid(pid)
    return rss_mb(pid) + (rss_mb(child) if child else 0.0)


def phase(port: int, requests: list[bytes], clients: int, duration: float, pid: int) -> dict:
    """A closed-loop run with the model's CPU seconds (its process, or the whole server
    when the model runs in a thread) counted over it."""
    child = model_pid(pid) or pid
    server_times(port)  # forget what came before
    before = cpu_seconds(child) if child != pid else cpu_seconds(pid)
    server_before = cpu_seconds(pid)
    seen = asyncio.run(drive(port, requests, clients, duration=duration))
    used = (cpu_seconds(child) if child != pid else cpu_seconds(pid)) - before
    return {**summary(seen, duration), "model_cpu_share": round(used / duration, 2),
            "server_cpu_share": round((cpu_seconds(pid) - server_before) / duration, 2),
            "server": server_summary(server_times(port), duration)}


def measure(args, tracking: str, features: list[str], mode: str, tree: Path) -> dict:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree), "MLC_TORCH_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, __file__, "--serve", tracking, str(port), mode],
                            env=env)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and args.pin:
        # the clients on one CPU, the server (and the model process it starts) on the rest:
        # what the model keeps of the server's CPU is measured, not the client's appetite
        os.sched_setaffinity(proc.pid, cpus[1:])
        os.sched_setaffinity(0, cpus[:1])
    phases = set(args.phases.split(","))
    try:
        wait_http(port, "/v2/health/ready", proc)
        row = json.dumps({"instances": [{f: 0.5 for f in features}]}).encode()
        valid = [http_request("/predict", row)]
        asyncio.run(drive(port, valid, 8, duration=2.0))  # warm-up
        rss_start = tree_rss_mb(proc.pid)
        saturated = phase(port, valid, args.saturation_clients, args.duration, proc.pid)
        storm = phase(port, valid, args.clients, args.duration, proc.pid)
        good = (storm["codes"].get(200, 0), saturated["codes"].get(200, 0))
        slo_good = (storm["server"]["slo_goodput_per_s"],
                    saturated["server"]["slo_goodput_per_s"])
        out = {"saturation": saturated, "storm": storm,
               "goodput_share": round(good[0] / max(1, good[1]), 2),
               "slo_goodput_share": round(slo_good[0] / max(1, slo_good[1]), 2)}
        if "memory" in phases:
            mixed = [http_request("/predict", b) for b in MALFORMED] + \
                [http_request("/predict", b"[" * 70_000)]  # over the 64 kB limit
            seen = asyncio.run(drive(port, valid, 8, total=4000))
            seen += asyncio.run(drive(port, mixed, 8, total=2000))
            seen += asyncio.run(drive(port, valid, args.clients, total=4000))
            out["memory"] = {"rss_after_warmup_mb": round(rss_start, 1),
                             "rss_after_10k_mb": round(tree_rss_mb(proc.pid), 1),
                             "requests": len(seen), "codes": summary(seen)["codes"]}
        if "slow" in phases:
            slow = asyncio.run(slow_bodies(port, 20))
            out["slow_bodies"] = {"codes": sorted({s for s, _ in slow}),
                                  **percentiles([t for _, t in slow])}
        out["rejected"] = counters(port)
        return out
    finally:
        stop(proc)
        os.sched_setaffinity(0, cpus)


def table(runs: list[dict]) -> str:
    """One line per tree, mode and round: what the issue asks of a storm."""
    head = ("| tree | mode | round | sat 200/s | storm 200/s | share | SLO share | "
            "server 200 p99 | server 200 within SLO | server 503 p50 / p99 | client 200 p99 | "
            "client 503 p99 | 503s | rejected |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in runs:
        st = r["storm"]
        lines.append(
            f"| {r['tree']} | {r['mode']} | {r['round']} | "
            f"{r['saturation'].get('goodput_per_s', 0):,.0f} | {st.get('goodput_per_s', 0):,.0f} | "
            f"{r['goodput_share']:.2f} | {r['slo_goodput_share']:.2f} | "
            f"{st['server']['200'].get('p99_ms', '-')} ms | "
            f"{st['server']['200_within_slo']:.1%} | {st['server']['503'].get('p50_ms', '-')} / "
            f"{st['server']['503'].get('p99_ms', '-')} ms | "
            f"{st['200'].get('p99_ms', '-')} ms | {st['503'].get('p99_ms', '-')} ms | "
            f"{st['codes'].get(503, 0):,} | "
            + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r["rejected"].items()) if v) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--saturation-clients", type=int, default=16,
                        help="clients of the storm-free run: enough to keep the model busy")
    parser.add_argument("--modes", default="process",
                        help="each measured in turn: where the model runs (process, thread); "
                        "-app: refusals by the ASGI app only, as before refuse_early")
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="another checkout of mlc (e.g. /work/main), whose server is "
                        "measured beside this tree's, round by round")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, each tree in turn")
    parser.add_argument("--phases", default="storm,memory,slow",
                        help="storm (saturation then storm, always), memory, slow")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="client and server share every CPU (on a 2-CPU machine pinning "
                        "leaves the server one CPU, where a model thread and the loop cannot "
                        "contend for the GIL across cores)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", nargs=3, metavar=("TRACKING_URI", "PORT", "MODE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0
    trees = [("this", ROOT)] + [(b.resolve().name, b.resolve()) for b in args.baseline]
    runs = []
    with tempfile.TemporaryDirectory(prefix="mlc-bench-overload-") as tmp:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        tracking = f"sqlite:///{tmp}/mlflow.db"
        features = build_model(Path(tmp) / "model", HIDDEN)
        register(Path(tmp) / "model", tracking, features)
        for round_ in range(1, args.repeat + 1):
            for name, tree in trees:
                for mode in args.modes.split(","):
                    load = os.getloadavg()[0]
                    runs.append({"tree": name, "mode": mode, "round": round_,
                                 "load": round(load, 1),
                                 **measure(args, tracking, features, mode, tree)})
                    print(table(runs[-1:]).splitlines()[-1], f"(load {load:.1f})",
                          file=sys.stderr, flush=True)
    result = {"slo_ms": SLO * 1000, "clients": args.clients,
              "saturation_clients": args.saturation_clients,
              "cpus": len(os.sched_getaffinity(0)), "pinned": args.pin, "runs": runs}
    print(json.dumps(result, indent=2))
    print(table(runs))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
