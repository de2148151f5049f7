"""The shadow mirror's cost to the primary: plain and mirrored primaries side by side, one run.

    python bench/bench_shadow.py [--reps 5] [--duration 2] [--clients 2 8] [--percent 30 100]
                                 [--sender other|with-primary] [--pin] [--json FILE]
                                 [--interleave slice|request]

Builds bench_serve.py's model (an MLP, 30 inputs, in mlc's model format, logged to a
throw-away MLflow) and starts mlc's servers on it:

  plain         a primary without a shadow
  control       a second one, the same: control/plain is what this machine alone does to a
                ratio (an A/A comparison), the noise floor of mirrored/plain
  mirrored-P    the same primary, copying P % of its answered requests to `shadow` (one
                server per --percent), through its mirror sender process
  shadow        the shadow they copy to (the same model: every copy agrees)

For each number of clients and each percent it drives `plain`, `mirrored-P` and `control` in
interleaved slices, `--reps` times (the order alternating, so that a busy moment on a shared
machine hurts both alike), with keep-alive connections in a closed loop and single-row
bodies. Per repetition it takes the mirrored/plain ratio of p99 and p50; it prints their
median and spread (min..max) over the repetitions, each server's median p50/p99 and
requests/s, the primary's own CPU per request and the sender's CPU per copy (from /proc),
the time the primary itself measured (mean, and the share over 10 ms, from its
mlc_request_duration_seconds: what the load generator's own delays on a busy machine do not
touch) and what the mirror counted (handed over, dropped, answered).

With `--interleave request` the servers are not measured one after the other but together,
request by request: each of `--clients` lanes holds a keep-alive connection to every server
and sends its next request to the next server in turn (plain, mirrored-P, control, plain, ...),
waiting for each answer. A busy moment of the machine then falls on whichever request is in
flight, on every server alike, instead of on one server's slice; what remains between two
servers is what their own code does to each request. It pools `--reps` x `--duration` seconds
of requests per server and prints p50/p99 of each, the mirrored/plain and control/plain p99
ratios with a bootstrap 95% interval (resampling each server's requests), and the same
server-side figures as the slice mode. The mirrored primary's copies still cost the shadow and
the sender their CPU, on the same machine: that CPU slows every server here alike, as a
shadow on other nodes would slow none of them.

With `--pin` (two or more CPUs): the measured primaries on CPU 0; the shadow and the load
generator on CPU 1, the shadow at nice 10 (in a cluster it runs elsewhere; here it yields to
the load generator, whose delays would count as the primary's latency); the mirror sender
(which runs as SCHED_IDLE anyway) on CPU 1 (`--sender other`, as when the pod has a second core
to give it) or on CPU 0 with its primary (`--sender with-primary`, a pod of one core).
Everything runs on loopback, in a temp folder; servers are stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_serve  # noqa: E402  (the model, the load generator and the server helpers)


def serve(tracking_uri: str, port: int, log_dir: str, role: str, mirror_url: str,
          percent: int) -> None:
    import logging

    from mlc.runtime.serve.server import ServeApp, ServeSettings, make_server
    from mlc.runtime.serve.settings import MirrorSettings

    logging.basicConfig(level=logging.WARNING)
    mirror = (MirrorSettings(url=mirror_url, percent=percent, task="classification",
                             tolerance=0.0, max_queue=1000, timeout_seconds=1.0)
              if mirror_url != "-" else None)
    settings = ServeSettings(endpoint="bench" if role == "primary" else "bench-shadow",
                             model_uri=f"models:/{bench_serve.MODEL}@production",
                             tracking_uri=tracking_uri, model_names=(bench_serve.MODEL,),
                             max_batch_size=64, max_latency=0.002, max_queue=1024,
                             prediction_log_uri=log_dir, prediction_log_sample=0.1,
                             role=role, mirror=mirror)
    make_server(ServeApp(settings), "127.0.0.1", port, log_level="warning").run()


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads, not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (affinity is per thread)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except OSError:
            pass


def mirrored_counts(port: int) -> dict[str, float]:
    """The mirrored primary's own account: copies handed over, dropped, answered."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("mlc_shadow_mirrored_total", "mlc_shadow_dropped_total",
                     "mlc_shadow_responses_total", "mlc_shadow_compared_total",
                     "mlc_shadow_sender_restarts_total"):
            if line.startswith(name + "{") or line.startswith(name + " "):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def server_time(port: int) -> tuple[float, float, float]:
    """The server's own account of /predict: seconds in total, requests, requests > 10 ms
    (mlc_request_duration_seconds: from request received to response sent)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = count = fast = 0.0
    for line in text.splitlines():
        if not line.startswith("mlc_request_duration_seconds") or 'route="/predict"' not in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith("mlc_request_duration_seconds_sum"):
            total += value
        elif line.startswith("mlc_request_duration_seconds_count"):
            count += value
        elif 'le="0.01"' in line:
            fast += value
    return total, count, count - fast


def measure(name: str, port: int, pid: int, request: bytes, clients: int, warmup: float,
            duration: float) -> dict:
    sender = children(pid)
    before = (proc_cpu_seconds(pid), sum(proc_cpu_seconds(c) for c in sender))
    served = server_time(port)
    out = bench_serve.drive(port, request, clients, warmup, duration)
    total, count, slow = (a - b for a, b in zip(server_time(port), served, strict=True))
    lat = np.asarray(out["latencies"])
    own = proc_cpu_seconds(pid) - before[0]
    sender_cpu = sum(proc_cpu_seconds(c) for c in sender) - before[1]
    # the CPU figures include the warm-up's requests: per request over the whole slice
    n_total = len(lat) * (warmup + duration) / duration
    return {"p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3), "rps": len(lat) / out["elapsed"],
            "errors": out["errors"], "cpu_us_per_request": own / max(n_total, 1) * 1e6,
            "sender_cpu_us_per_request": sender_cpu / max(n_total, 1) * 1e6,
            "server_mean_ms": total / max(count, 1) * 1e3,
            "server_over_10ms": slow / max(count, 1)}


class _LaneConn(asyncio.Protocol):
    """One keep-alive connection of a lane to one server: sends when the lane says, reads one
    answer, hands the turn back to the lane."""

    def __init__(self, lane: _Lane, index: int):
        self.lane, self.index = lane, index
        self.buffer, self.need, self.status = b"", None, 0

    def connection_made(self, transport):
        self.transport = transport
        self.lane.connected(self)

    def send(self, request: bytes) -> None:
        self.buffer, self.need = b"", None
        self.transport.write(request)

    def data_received(self, data: bytes):
        self.buffer += data
        if self.need is None:
            parsed = bench_serve.response_head(self.buffer)
            if parsed is None:
                return
            self.status, self.need, _ = parsed
        if len(self.buffer) >= self.need:
            self.lane.answered(self.index, self.status)

    def connection_lost(self, exc):
        self.lane.lost()


class _Lane:
    """A closed loop over every server in turn: one request in flight at a time."""

    def __init__(self, request: bytes, n: int, stats: dict, done: asyncio.Future):
        self.request, self.n, self.stats, self.done = request, n, stats, done
        self.conns: list[_LaneConn | None] = [None] * n
        self.turn, self.sent = 0, 0.0

    def connected(self, conn: _LaneConn) -> None:
        self.conns[conn.index] = conn

    def start(self, first: int) -> None:
        self.turn = first
        self._send()

    def _send(self) -> None:
        self.sent = time.perf_counter()
        self.conns[self.turn].send(self.request)

    def answered(self, index: int, status: int) -> None:
        now = time.perf_counter()
        if self.stats["recording"]:
            self.stats["latencies"][index].append(now - self.sent)
            if status != 200:
                self.stats["errors"][index] += 1
        if self.stats["stop"]:
            for conn in self.conns:
                conn.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self.turn = (index + 1) % self.n
        self._send()

    def lost(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _drive_interleaved(ports: list[int], request: bytes, lanes: int, warmup: float,
                             duration: float) -> dict:
    loop = asyncio.get_running_loop()
    n = len(ports)
    stats = {"latencies": [[] for _ in ports], "errors": [0] * n, "recording": False,
             "stop": False}
    done = [loop.create_future() for _ in range(lanes)]
    all_lanes = [_Lane(request, n, stats, d) for d in done]
    for lane in all_lanes:
        for i, port in enumerate(ports):
            await loop.create_connection(lambda lane=lane, i=i: _LaneConn(lane, i),
                                         "127.0.0.1", port)
    for k, lane in enumerate(all_lanes):
        lane.start(k % n)  # lanes start on different servers: no server is always first
    await asyncio.sleep(warmup)
    stats["recording"] = True
    start = time.perf_counter()
    await asyncio.sleep(duration)
    stats["recording"] = False
    elapsed = time.perf_counter() - start
    stats["stop"] = True
    await asyncio.wait(done, timeout=10)
    return {"latencies": stats["latencies"], "errors": stats["errors"], "elapsed": elapsed}


def drive_interleaved(ports, request, lanes, warmup, duration) -> dict:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_drive_interleaved(ports, request, lanes, warmup, duration))
    return uvloop.run(_drive_interleaved(ports, request, lanes, warmup, duration))


def p99_ratio_interval(a: np.ndarray, b: np.ndarray, rounds: int = 400,
                       seed: int = 0) -> tuple[float, float, float]:
    """p99(a)/p99(b) and its bootstrap 95% interval (each sample resampled on its own)."""
    rng = np.random.default_rng(seed)
    ratios = np.empty(rounds)
    for i in range(rounds):
        ratios[i] = (np.percentile(rng.choice(a, a.size), 99)
                     / np.percentile(rng.choice(b, b.size), 99))
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(np.percentile(a, 99) / np.percentile(b, 99)), float(low), float(high)


def measure_interleaved(names: list[str], procs: dict, request: bytes, clients: int,
                        warmup: float, duration: float, reps: int) -> dict:
    """Every server in `names` driven together, request by request; pooled over `reps`."""
    ports = [procs[name][1] for name in names]
    pids = [procs[name][0].pid for name in names]
    senders = [children(pid) for pid in pids]
    cpu0 = [proc_cpu_seconds(pid) for pid in pids]
    sender0 = [sum(proc_cpu_seconds(c) for c in s) for s in senders]
    served0 = [server_time(port) for port in ports]
    pooled: list[list[float]] = [[] for _ in names]
    errors = [0] * len(names)
    elapsed = 0.0
    for _ in range(reps):
        out = drive_interleaved(ports, request, clients, warmup, duration)
        for i in range(len(names)):
            pooled[i].extend(out["latencies"][i])
            errors[i] += out["errors"][i]
        elapsed += out["elapsed"]
    result = {}
    for i, name in enumerate(names):
        lat = np.asarray(pooled[i])
        total, count, slow = (a - b for a, b in zip(server_time(ports[i]), served0[i],
                                                    strict=True))
        n_total = len(lat) * (warmup + duration) / duration
        result[name] = {
            "lat": lat, "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3), "requests": int(lat.size),
            "rps": lat.size / elapsed, "errors": errors[i],
            "cpu_us_per_request": (proc_cpu_seconds(pids[i]) - cpu0[i]) / max(n_total, 1) * 1e6,
            "sender_cpu_us_per_request": (sum(proc_cpu_seconds(c) for c in senders[i])
                                          - sender0[i]) / max(n_total, 1) * 1e6,
            "server_mean_ms": total / max(count, 1) * 1e3,
            "server_over_10ms": slow / max(count, 1)}
    return result


def _print_interleaved(clients: int, percent: int, r: dict) -> dict:
    plain, mirrored, control = r["plain"], r[f"mirrored-{percent}"], r["control"]
    ratio = p99_ratio_interval(mirrored["lat"], plain["lat"])
    noise = p99_ratio_interval(control["lat"], plain["lat"])
    p50 = mirrored["p50_ms"] / plain["p50_ms"]
    print(f"{clients} lanes, {percent:3d} %, {plain['requests']} requests per server: "
          f"p99 mirrored/plain {ratio[0]:.3f} [95% {ratio[1]:.3f}..{ratio[2]:.3f}]  "
          f"p50 {p50:.3f}  (control/plain p99 {noise[0]:.3f} [{noise[1]:.3f}..{noise[2]:.3f}])"
          f"  |  p50/p99 ms: plain {plain['p50_ms']:.2f}/{plain['p99_ms']:.2f}, mirrored "
          f"{mirrored['p50_ms']:.2f}/{mirrored['p99_ms']:.2f}, control "
          f"{control['p50_ms']:.2f}/{control['p99_ms']:.2f}  |  primary CPU "
          f"{plain['cpu_us_per_request']:.0f} / {mirrored['cpu_us_per_request']:.0f} "
          f"us/request, sender {mirrored['sender_cpu_us_per_request']:.0f} us/request  |  "
          f"in the server: mean {plain['server_mean_ms']:.2f} / "
          f"{mirrored['server_mean_ms']:.2f} ms  errors "
          f"{plain['errors'] + mirrored['errors'] + control['errors']}", flush=True)
    return {"clients": clients, "percent": percent, "interleave": "request",
            "requests_per_server": plain["requests"], "p99_ratio": ratio[0],
            "p99_ratio_low": ratio[1], "p99_ratio_high": ratio[2], "p50_ratio": p50,
            "control_p99_ratio": noise[0], "control_p99_ratio_low": noise[1],
            "control_p99_ratio_high": noise[2],
            **{f"{role}_{key}": r[name][key]
               for role, name in (("plain", "plain"), ("mirrored", f"mirrored-{percent}"),
                                  ("control", "control"))
               for key in ("p50_ms", "p99_ms", "rps", "cpu_us_per_request", "server_mean_ms",
                           "server_over_10ms", "errors")},
            "sender_cpu_us_per_request": mirrored["sender_cpu_us_per_request"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--percent", type=int, nargs="+", default=[30, 100],
                        help="shares of requests mirrored (one mirrored server each)")
    parser.add_argument("--clients", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--duration", type=float, default=2.0,
                        help="seconds per measurement slice")
    parser.add_argument("--reps", type=int, default=5,
                        help="interleaved plain/mirrored pairs per setting")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--pin", action="store_true",
                        help="primaries on CPU 0, shadow and load generator on CPU 1")
    parser.add_argument("--sender", choices=["other", "with-primary"], default="other",
                        help="with --pin: the mirror sender's CPU")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--interleave", choices=["slice", "request"], default="slice",
                        help="measure the servers in turn, slice by slice, or together, "
                             "request by request")
    parser.add_argument("--serve", nargs=6, help=argparse.SUPPRESS,
                        metavar=("TRACKING_URI", "PORT", "LOG_DIR", "ROLE", "MIRROR", "PCT"))
    args = parser.parse_args()
    if args.serve:
        t, port, log_dir, role, mirror, pct = args.serve
        serve(t, int(port), log_dir, role, mirror, int(pct))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="mlc-bench-shadow-"))
    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    from mlc.runtime.serve.loader import torch_threads

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "MLFLOW_REGISTRY_URI": tracking,
           "OMP_NUM_THREADS": str(torch_threads()),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    os.environ.update({"MLFLOW_TRACKING_URI": tracking})
    features = bench_serve.build_model(tmp / "model")
    bench_serve.register(tmp / "model", tracking, features)
    import json

    values = np.random.default_rng(0).normal(size=(1, bench_serve.N_FEATURES)).round(6)
    body = json.dumps({"instances": [dict(zip(features, v, strict=True))
                                     for v in values.tolist()]}).encode()
    request = bench_serve.http_request("/predict", body)
    pinned = args.pin and (os.cpu_count() or 1) > 1
    measured_cpu, other_cpu = ({0}, {1}) if pinned else (None, None)
    if other_cpu:
        os.sched_setaffinity(0, other_cpu)
    procs: dict[str, tuple[subprocess.Popen, int]] = {}

    def start(name: str, role: str, mirror: str, percent: int = 0) -> None:
        port = bench_serve.free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", tracking, str(port), str(tmp / f"log-{name}"),
             role, mirror, str(percent)], env=env, cwd=tmp, stdout=subprocess.DEVNULL,
            stderr=open(tmp / f"{name}.log", "wb"))
        if measured_cpu and name != "shadow":
            os.sched_setaffinity(proc.pid, measured_cpu)
        if measured_cpu and name == "shadow":
            # in a cluster the shadow runs elsewhere: here it yields its CPU to the load
            # generator, whose delays would otherwise count as the primary's latency
            os.setpriority(os.PRIO_PROCESS, proc.pid, 10)
        procs[name] = (proc, port)
        bench_serve.wait_http(port, "/v2/health/ready", proc)
        if measured_cpu and name != "shadow":
            for sender in children(proc.pid):
                pin(sender, other_cpu if args.sender == "other" else measured_cpu)

    placement = (f"pinned: primaries on CPU 0, shadow (nice 10) and load generator on CPU 1, "
                 f"mirror sender (SCHED_IDLE) on CPU {1 if args.sender == 'other' else 0}" if pinned
                 else "not pinned: every process on every CPU")
    print(f"{os.cpu_count()} cores; {placement}; {args.reps} reps of {args.duration:g} s "
          f"slices; temp {tmp}", flush=True)
    rows: list[dict] = []
    counts: dict[int, dict[str, float]] = {}
    try:
        start("shadow", "shadow", "-")
        start("plain", "primary", "-")
        start("control", "primary", "-")
        for percent in args.percent:
            start(f"mirrored-{percent}", "primary",
                  f"http://127.0.0.1:{procs['shadow'][1]}", percent)
        for clients in args.clients:
            for percent in args.percent:
                if args.interleave == "request":
                    names = ["plain", f"mirrored-{percent}", "control"]
                    rows.append(_print_interleaved(clients, percent, measure_interleaved(
                        names, procs, request, clients, args.warmup, args.duration,
                        args.reps)))
                    continue
                reps = []
                for rep in range(args.reps):
                    order = ("plain", f"mirrored-{percent}", "control")
                    result = {}
                    for name in order if rep % 2 == 0 else order[::-1]:
                        proc, port = procs[name]
                        result[name.split("-")[0]] = measure(
                            name, port, proc.pid, request, clients, args.warmup, args.duration)
                    reps.append(result)
                rows.append(_summary(clients, percent, reps))
                _print(rows[-1])
        time.sleep(1.5)  # the last copies answered
        counts = {p: mirrored_counts(procs[f"mirrored-{p}"][1]) for p in args.percent}
    finally:
        for proc, _ in procs.values():
            bench_serve.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    for percent, c in counts.items():
        print(f"mirrored-{percent}: " + ", ".join(
            f"{k.removeprefix('mlc_shadow_').removesuffix('_total')} {v:.0f}"
            for k, v in sorted(c.items())))
    if args.json:
        args.json.write_text(json.dumps({"placement": placement, "rows": rows,
                                         "counts": counts}, indent=2))
    return 0


def _summary(clients: int, percent: int, reps: list[dict]) -> dict:
    def med(role: str, key: str) -> float:
        return float(np.median([r[role][key] for r in reps]))

    p99 = [r["mirrored"]["p99_ms"] / r["plain"]["p99_ms"] for r in reps]
    # two identical servers measured the same way: how far this machine alone moves a ratio
    control = [r["control"]["p99_ms"] / r["plain"]["p99_ms"] for r in reps]
    p50 = [r["mirrored"]["p50_ms"] / r["plain"]["p50_ms"] for r in reps]
    return {"clients": clients, "percent": percent,
            "p99_ratio": float(np.median(p99)), "p99_ratio_min": min(p99),
            "p99_ratio_max": max(p99), "p50_ratio": float(np.median(p50)),
            "control_p99_ratio": float(np.median(control)),
            "control_p99_ratio_min": min(control), "control_p99_ratio_max": max(control),
            **{f"{role}_{key}": med(role, key) for role in ("plain", "mirrored")
               for key in ("p50_ms", "p99_ms", "rps", "cpu_us_per_request", "server_mean_ms",
                           "server_over_10ms")},
            "sender_cpu_us_per_request": med("mirrored", "sender_cpu_us_per_request"),
            "errors": sum(r[role]["errors"] for r in reps for role in ("plain", "mirrored"))}


def _print(row: dict) -> None:
    print(f"{row['clients']} clients, {row['percent']:3d} %: p99 mirrored/plain "
          f"{row['p99_ratio']:.3f} [{row['p99_ratio_min']:.3f}..{row['p99_ratio_max']:.3f}]"
          f"  p50 {row['p50_ratio']:.3f}  (control/plain p99 {row['control_p99_ratio']:.3f} "
          f"[{row['control_p99_ratio_min']:.3f}..{row['control_p99_ratio_max']:.3f}])"
          f"  |  plain p50 {row['plain_p50_ms']:.2f} p99 "
          f"{row['plain_p99_ms']:.2f} ms {row['plain_rps']:.0f}/s  mirrored p50 "
          f"{row['mirrored_p50_ms']:.2f} p99 {row['mirrored_p99_ms']:.2f} ms "
          f"{row['mirrored_rps']:.0f}/s  |  primary CPU {row['plain_cpu_us_per_request']:.0f}"
          f" / {row['mirrored_cpu_us_per_request']:.0f} us/request, sender "
          f"{row['sender_cpu_us_per_request']:.0f} us/request  |  in the server: mean "
          f"{row['plain_server_mean_ms']:.2f} / {row['mirrored_server_mean_ms']:.2f} ms, over "
          f"10 ms {row['plain_server_over_10ms']:.2%} / {row['mirrored_server_over_10ms']:.2%}"
          f"  errors {row['errors']}",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
