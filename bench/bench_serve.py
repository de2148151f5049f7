"""Serving speed: mlc's server vs `mlflow models serve` vs a bare uvicorn app, one run.

    python bench/bench_serve.py [--rounds 3] [--duration 4] [--clients 8]

Builds one small torch model (an MLP, 30 inputs, hidden layers 64 and 32) in mlc's model
format, logs it to a throw-away MLflow (SQLite, temp folder) as a pyfunc model and gives it
the alias `production`. Then, one at a time, it starts

  mlflow    `mlflow models serve -m models:/bench@production --env-manager local`
  bare      a minimal raw-ASGI app on uvicorn (same loop/parser/JSON library as mlc) that
            parses the body, builds the rows and calls the model, nothing else
  mlc       mlc's server (mlc/runtime/serve), model loaded from the registry by alias, with
            validation, dynamic batching, metrics and 10% prediction logging switched on

and drives each on 127.0.0.1 with `--clients` keep-alive connections in a closed loop, with
single-row and with 64-row bodies, in `--rounds` interleaved slices of `--duration` seconds
(after a warm-up each). It prints requests/s, p50 and p99 latency, the server's CPU time per
request (from /proc: robust to other load on the machine), and the ratios the issue asks
for.
Everything runs on loopback, in a temp folder, bounded in time; servers are stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 30
HIDDEN = [64, 32]
MODEL = "bench"


# --- the model ---------------------------------------------------------------------------------

def build_model(folder: Path, hidden: list[int] = HIDDEN) -> list[str]:
    import torch

    from mlc.runtime import model_format

    features = [f"f{i:02d}" for i in range(N_FEATURES)]
    spec = model_format.make_spec(
        task="classification", features=features, feature_refs=[f"bench:{f}" for f in features],
        hidden_layers=hidden, dropout=0.0, fill=[0.0] * N_FEATURES, mean=[0.0] * N_FEATURES,
        std=[1.0] * N_FEATURES, label="y", classes=[0, 1])
    torch.manual_seed(0)
    model_format.save_model(folder, spec, model_format.build_module(spec).state_dict())
    return features


def register(folder: Path, tracking_uri: str, features: list[str]) -> None:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from mlc.runtime import model_format
    from mlc.runtime.train.tracking import PYFUNC_CODE

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    example = pd.DataFrame(np.zeros((2, len(features))), columns=features)
    module, spec = model_format.load_model(folder)
    signature = infer_signature(example, model_format.predict_frame(module, spec, example))
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE),
                                       artifacts={model_format.ARTIFACT_KEY: str(folder)},
                                       signature=signature, pip_requirements=["numpy"])
    version = mlflow.register_model(info.model_uri, MODEL)
    mlflow.MlflowClient().set_registered_model_alias(MODEL, "production", version.version)


# --- the servers -------------------------------------------------------------------------------

def serve_bare(model_dir: str, port: int) -> None:
    """A bare uvicorn app: parse, build rows, call the model, answer. No checks, no metrics,
    no batching. It calls the model exactly as mlc's server does (the same loaded function),
    so the difference between the two is what the server adds."""
    import importlib.util

    import uvicorn

    from mlc.runtime.serve.loader import load_folder
    from mlc.runtime.serve.server import dumps, loads

    model = load_folder(Path(model_dir), name=MODEL, version="1", alias=None, trained_at=None)
    names, predict = model.features, model.predict

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        doc = loads(body)
        rows = np.array([[inst[n] for n in names] for inst in doc["instances"]], dtype=float)
        out = dumps({"predictions": predict(rows)})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning",
                loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
                http="httptools" if importlib.util.find_spec("httptools") else "h11")


def serve_mlc(tracking_uri: str, port: int, log_dir: str, thread: bool | None = None) -> None:
    import logging

    from mlc.runtime.serve.server import ServeApp, ServeSettings, make_server

    logging.basicConfig(level=logging.WARNING)
    settings = ServeSettings(endpoint="bench", model_uri=f"models:/{MODEL}@production",
                             tracking_uri=tracking_uri, model_names=(MODEL,),
                             max_batch_size=64, max_latency=0.002, max_queue=1024,
                             prediction_log_uri=log_dir, prediction_log_sample=0.1,
                             model_thread=thread)
    make_server(ServeApp(settings), "127.0.0.1", port, log_level="warning").run()


# --- the load generator -------------------------------------------------------------------------

def response_head(buffer: bytes) -> tuple[int, int, bytes] | None:
    """(status, bytes of the whole response, the lower-cased head) of the HTTP response at
    the start of `buffer`, or None while its head is incomplete. Every header line of the
    head ends with CRLF here, so that a Content-Length that comes last is read whole."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end + 2].lower()
    at = head.find(b"content-length:")
    length = int(head[at + 15:head.find(b"\r\n", at)]) if at >= 0 else 0
    return int(head[9:12]), end + 4 + length, head


class _Client(asyncio.Protocol):
    """One keep-alive connection in a closed loop: send, read one response, repeat."""

    def __init__(self, request: bytes, stats: dict, done: asyncio.Future):
        self.request, self.stats, self.done = request, stats, done
        self.buffer = b""
        self.need = None
        self.sent = 0.0

    def connection_made(self, transport):
        self.transport = transport
        self._send()

    def _send(self):
        self.buffer, self.need = b"", None
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes):
        self.buffer += data
        if self.need is None:
            parsed = response_head(self.buffer)
            if parsed is None:
                return
            self.status, self.need, _ = parsed
        if len(self.buffer) < self.need:
            return
        now = time.perf_counter()
        if self.stats["recording"]:
            self.stats["latencies"].append(now - self.sent)
            if self.status != 200:
                self.stats["errors"] += 1
        if self.stats["stop"]:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self._send()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(None)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process, its threads and its descendants (Linux /proc;
    `mlflow models serve` runs its server as a child), else 0."""
    if pid is None:
        return 0.0
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, total, grew = {pid}, 0, True
    while grew:
        grew = False
        for p, (parent, _) in stats.items():
            if parent in tree and p not in tree:
                tree.add(p)
                grew = True
    for p in tree:
        total += stats.get(p, (0, 0))[1]
    return total / os.sysconf("SC_CLK_TCK")


async def _drive(port: int, request: bytes, clients: int, warmup: float, duration: float,
                 pid: int | None = None):
    loop = asyncio.get_running_loop()
    stats = {"latencies": [], "errors": 0, "recording": False, "stop": False}
    done = [loop.create_future() for _ in range(clients)]
    for d in done:
        await loop.create_connection(lambda d=d: _Client(request, stats, d), "127.0.0.1", port)
    await asyncio.sleep(warmup)
    stats["recording"] = True
    start, cpu = time.perf_counter(), cpu_seconds(pid)
    await asyncio.sleep(duration)
    stats["recording"] = False
    elapsed, cpu = time.perf_counter() - start, cpu_seconds(pid) - cpu
    stats["stop"] = True
    await asyncio.wait(done, timeout=10)
    return {"latencies": stats["latencies"], "elapsed": elapsed, "cpu": cpu,
            "errors": stats["errors"]}


def summarise(slices: list[dict]) -> dict:
    """Pool the slices of one server and body size: throughput over their total time,
    percentiles over all their requests."""
    lat = np.concatenate([np.asarray(s["latencies"]) for s in slices])
    elapsed = sum(s["elapsed"] for s in slices)
    return {"rps": len(lat) / elapsed, "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3), "requests": int(len(lat)),
            "errors": sum(s["errors"] for s in slices),
            "server_cpu_us_per_request": sum(s["cpu"] for s in slices) / max(len(lat), 1) * 1e6,
            "slices_rps": [round(len(s["latencies"]) / s["elapsed"]) for s in slices]}


def drive(port, request, clients, warmup, duration, pid=None):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_drive(port, request, clients, warmup, duration, pid))
    return uvloop.run(_drive(port, request, clients, warmup, duration, pid))


def http_request(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


# --- orchestration ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"server on {port} not ready after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0,
                        help="seconds per measurement slice")
    parser.add_argument("--rounds", type=int, default=3,
                        help="slices per server and body size, interleaved")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip", action="append", default=[],
                        choices=["mlflow", "bare", "mlc", "mlc-thread"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp folder (MLflow db, server logs, prediction log)")
    parser.add_argument("--serve-bare", nargs=2, metavar=("MODEL_DIR", "PORT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--serve-mlc", nargs=4,
                        metavar=("TRACKING_URI", "PORT", "LOG_DIR", "THREAD"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare[0], int(args.serve_bare[1]))
        return 0
    if args.serve_mlc:
        serve_mlc(args.serve_mlc[0], int(args.serve_mlc[1]), args.serve_mlc[2],
                  {"thread": True, "inline": False}.get(args.serve_mlc[3]))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="mlc-bench-serve-"))
    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    from mlc.runtime.serve.loader import torch_threads

    # Every server gets the same torch thread count as mlc's (cores - 1): with torch's
    # default (all cores) a busy 2-core machine makes MLflow's OpenMP threads spin against
    # each other and the load generator, which would flatter the ratios.
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "MLFLOW_REGISTRY_URI": tracking,
           "OMP_NUM_THREADS": str(torch_threads()),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    os.environ.update({"MLFLOW_TRACKING_URI": tracking})
    features = build_model(tmp / "model")
    register(tmp / "model", tracking, features)
    rng = np.random.default_rng(0)
    payloads = {}
    for rows in (1, 64):
        values = rng.normal(size=(rows, N_FEATURES)).round(6).tolist()
        records = json.dumps({"instances": [dict(zip(features, v, strict=True))
                                            for v in values]}).encode()
        split = json.dumps({"dataframe_split": {"columns": features, "data": values}}).encode()
        payloads[rows] = {"mlflow": http_request("/invocations", split),
                          "bare": http_request("/predict", records),
                          "mlc": http_request("/predict", records),
                          "mlc-thread": http_request("/predict", records)}
    servers = {
        "mlflow": ([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                    f"models:/{MODEL}@production", "--env-manager", "local", "-h", "127.0.0.1",
                    "-p", "{port}"], "/health"),
        "bare": ([sys.executable, __file__, "--serve-bare", str(tmp / "model"), "{port}"],
                 None),
        "mlc": ([sys.executable, __file__, "--serve-mlc", tracking, "{port}",
                 str(tmp / "predictions"), "auto"], "/v2/health/ready"),
        "mlc-thread": ([sys.executable, __file__, "--serve-mlc", tracking, "{port}",
                        str(tmp / "predictions-thread"), "thread"], "/v2/health/ready"),
    }
    print(f"{os.cpu_count()} cores; {args.clients} clients; {args.rounds} rounds of "
          f"{args.duration:.0f} s per server and body size; model: MLP "
          f"{N_FEATURES}-{'-'.join(map(str, HIDDEN))}-1; temp {tmp}", flush=True)
    procs: dict[str, tuple[subprocess.Popen, int]] = {}
    slices: dict[tuple[str, int], list[dict]] = {}
    try:
        for name, (command, ready_path) in servers.items():
            if name in args.skip:
                continue
            port = free_port()
            proc = subprocess.Popen([c.replace("{port}", str(port)) for c in command], env=env,
                                    cwd=tmp, stdout=subprocess.DEVNULL,
                                    stderr=open(tmp / f"{name}.log", "wb"))
            procs[name] = (proc, port)
            if ready_path:
                wait_http(port, ready_path, proc)
            else:  # the bare app has no health route: wait for a prediction
                deadline = time.time() + 60
                while True:
                    try:
                        drive(port, payloads[1][name], 1, 0.0, 0.2)
                        break
                    except OSError:
                        if time.time() > deadline or proc.poll() is not None:
                            raise
                        time.sleep(0.3)
        # Rounds interleave the servers, so that a busy moment on a shared machine hurts
        # them all alike instead of whichever happened to run then.
        for _ in range(args.rounds):
            for rows in (1, 64):
                for name, (proc, port) in procs.items():
                    slices.setdefault((name, rows), []).append(
                        drive(port, payloads[rows][name], args.clients, args.warmup,
                              args.duration, proc.pid))
    finally:
        for proc, _ in procs.values():
            stop(proc)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    results: dict[str, dict[int, dict]] = {}
    for (name, rows), parts in slices.items():
        r = results.setdefault(name, {})[rows] = summarise(parts)
        print(f"{name:10} {rows:3} rows/request: {r['rps']:7.0f} req/s  "
              f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
              f"server CPU {r['server_cpu_us_per_request']:6.0f} us/request  "
              f"errors {r['errors']}  (rounds: {r['slices_rps']})", flush=True)
    print()
    for name in ("mlc", "mlc-thread"):
        if name not in results:
            continue
        for rows in (1, 64):
            m = results[name][rows]
            line = [f"{name:10} {rows:3} rows:"]
            if "mlflow" in results:
                f = results["mlflow"][rows]
                line.append(f"vs mlflow: throughput {m['rps'] / f['rps']:.2f}x, "
                            f"p99 {f['p99_ms'] / m['p99_ms']:.1f}x lower;")
            if "bare" in results:
                b = results["bare"][rows]
                cpu = m["server_cpu_us_per_request"] / b["server_cpu_us_per_request"]
                line.append(f"vs bare: throughput {m['rps'] / b['rps']:.0%}, "
                            f"CPU per request {cpu:.0%}")
            print(" ".join(line))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
