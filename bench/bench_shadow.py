"""The shadow mirror's cost to the primary: the same server with and without a shadow, one run.

    python bench/bench_shadow.py [--percent 100] [--rounds 4] [--duration 4] [--clients 8]

Builds bench_serve.py's model (an MLP, 30 inputs, in mlc's model format, logged to a
throw-away MLflow) and starts three of mlc's servers on it:

  plain     a primary without a shadow
  mirrored  the same primary, copying `--percent` of its answered requests to `shadow`
  shadow    the shadow the mirrored primary copies to (the same model: every copy agrees)

It drives `plain` and `mirrored` in interleaved slices (a busy moment on a shared machine hurts
both alike) with `--clients` keep-alive connections in a closed loop and single-row bodies, and
prints for each the requests/s, p50 and p99 latency, the server's CPU time per request (from
/proc), and the mirrored/plain ratios. With `--pin`, the two measured servers share one CPU
and the shadow and the load generator another (in a cluster the shadow runs elsewhere), so
that the shadow's own work is not counted as the mirror's cost. Everything runs on loopback,
in a temp folder; servers are stopped by pid.
"""

from __future__ import annotations

import argparse
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


def mirrored_counts(port: int) -> dict[str, float]:
    """The mirrored primary's own account: copies queued, dropped, answered."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("mlc_shadow_mirrored_total", "mlc_shadow_dropped_total",
                     "mlc_shadow_compared_total"):
            if line.startswith(name):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--percent", type=int, default=100, help="share of requests mirrored")
    parser.add_argument("--duration", type=float, default=4.0,
                        help="seconds per measurement slice")
    parser.add_argument("--rounds", type=int, default=4, help="slices per server, interleaved")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--pin", action="store_true",
                        help="measured servers on CPU 0, shadow and load generator on CPU 1")
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
    measured_cpu, other_cpu = ({0}, {1}) if args.pin and (os.cpu_count() or 1) > 1 else (
        None, None)
    if other_cpu:
        os.sched_setaffinity(0, other_cpu)
    procs: dict[str, tuple[subprocess.Popen, int]] = {}

    def start(name: str, role: str, mirror: str) -> None:
        port = bench_serve.free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", tracking, str(port), str(tmp / f"log-{name}"),
             role, mirror, str(args.percent)], env=env, cwd=tmp, stdout=subprocess.DEVNULL,
            stderr=open(tmp / f"{name}.log", "wb"))
        if measured_cpu and name != "shadow":
            os.sched_setaffinity(proc.pid, measured_cpu)
        procs[name] = (proc, port)
        bench_serve.wait_http(port, "/v2/health/ready", proc)

    print(f"{os.cpu_count()} cores; {args.clients} clients; {args.rounds} rounds of "
          f"{args.duration:.0f} s per server; {args.percent}% mirrored; "
          f"{'pinned' if measured_cpu else 'not pinned'}; temp {tmp}", flush=True)
    slices: dict[str, list[dict]] = {}
    try:
        start("shadow", "shadow", "-")
        start("plain", "primary", "-")
        start("mirrored", "primary", f"http://127.0.0.1:{procs['shadow'][1]}")
        for _ in range(args.rounds):
            for name in ("plain", "mirrored"):
                proc, port = procs[name]
                slices.setdefault(name, []).append(bench_serve.drive(
                    port, request, args.clients, args.warmup, args.duration, proc.pid))
        time.sleep(1.5)  # the last copies answered
        counts = mirrored_counts(procs["mirrored"][1])
    finally:
        for proc, _ in procs.values():
            bench_serve.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    results = {name: bench_serve.summarise(parts) for name, parts in slices.items()}
    for name, r in results.items():
        print(f"{name:9} {r['rps']:7.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
              f"p99 {r['p99_ms']:7.2f} ms  server CPU {r['server_cpu_us_per_request']:6.0f} "
              f"us/request  errors {r['errors']}  (rounds: {r['slices_rps']})", flush=True)
    plain, mirrored = results["plain"], results["mirrored"]
    print(f"\nmirrored / plain: p50 {mirrored['p50_ms'] / plain['p50_ms']:.3f}  "
          f"p99 {mirrored['p99_ms'] / plain['p99_ms']:.3f}  "
          f"CPU per request {mirrored['server_cpu_us_per_request'] / max(plain['server_cpu_us_per_request'], 1e-9):.3f}  "  # noqa: E501
          f"throughput {mirrored['rps'] / plain['rps']:.3f}")
    print("mirror: " + ", ".join(f"{k.removeprefix('mlc_shadow_')} {v:.0f}"
                                 for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
