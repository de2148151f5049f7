"""One XGBoost model served by mlc's runtime and by MLServer, side by side in one run.

    python bench/bench_engines.py [--reps 3] [--duration 3] [--clients 1 8]
                                  [--mlserver PATH] [--json FILE]

Trains one XGBoost classifier (30 inputs, 50 trees of depth 6, on synthetic rows with
missing values), saves it as the tree trainers save it (`model.json` in the model folder)
and serves that one file twice:

  mlc       mlc's server (mlc/runtime/serve), the folder logged to a throw-away MLflow as the
            trainer logs its model folder and loaded by mlc's loader from the registry by
            alias, with validation, dynamic batching and metrics on (prediction logging off)
  mlserver  MLServer with its XGBoost runtime (`mlserver_xgboost.XGBoostModel`) on the same
            model.json, answering the V2 inference protocol

Both are driven together, request by request, as bench_shadow.py's `--interleave request`
does: each of `--clients` lanes holds a keep-alive connection to both servers and sends its
next single-row request to the other one, waiting for each answer, so a busy moment of the
machine falls on both alike. It pools `--reps` x `--duration` seconds per server and prints,
per number of clients, each server's p50, p99 and requests/s, and the mlserver/mlc ratios
(p99 with a bootstrap 95% interval). Before measuring, it checks that both answer the same
probabilities for the same rows.

Where the servers come from, printed at the start:
- mlc's loader must read an XGBoost folder (the tree trainers' change): if it cannot yet,
  the bench says so and exits 2;
- MLServer: `--mlserver` (its `mlserver` executable), else the `mlserver` command of this
  Python's environment, else `.venv-mlserver/bin/mlserver` in this checkout or beside it;
  none found: it says where it looked and exits 2.
Everything runs on loopback, in a temp folder; servers are stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

import bench_serve  # noqa: E402  (the server helpers and the HTTP response reader)
import bench_shadow  # noqa: E402  (the interleaved lanes' connection, the p99 interval)

N_FEATURES = 30
MODEL = "bench-trees"
EXIT_NOT_READY = 2
SKLEARN_FILE = "classifier.json"  # beside the model folder


def train(folder: Path) -> tuple[list[str], np.ndarray]:
    """The XGBoost model in `folder/model.json`; its feature names and sample rows."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, N_FEATURES)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2])
         + rng.normal(0, 0.5, len(x)) > 0).astype(int)
    model = xgb.XGBClassifier(n_estimators=50, max_depth=6, random_state=0, n_jobs=1)
    model.fit(x, y)
    names = [f"f{i:02d}" for i in range(N_FEATURES)]
    # as the XGBoost trainer saves it: model.json beside the spec mlc's loader reads
    from mlc.runtime import model_format

    spec = model_format.make_native_spec(
        kind="xgboost", task="classification", features=names,
        feature_refs=[f"bench:{n}" for n in names], label="label", classes=[0, 1],
        architecture={"library": "xgboost", "library_version": xgb.__version__})
    model_format.save_native(folder, spec, model)
    # the same trees saved by the classifier itself, whose JSON also says it is one: MLServer's
    # XGBoost runtime reads a bare booster's file as a regressor (no predict_proba)
    model.save_model(str(folder.parent / SKLEARN_FILE))
    return names, x[:256]


def mlc_can_load(folder: Path) -> str | None:
    """None when mlc's loader reads the folder, else why not."""
    from mlc.runtime.serve.loader import ModelLoadError, load_folder

    try:
        load_folder(folder, name=MODEL, version="1", alias=None, trained_at=None,
                    allow_pickle=False)
    except (ModelLoadError, FileNotFoundError, ValueError) as exc:
        return str(exc)
    return None


def find_mlserver(explicit: str | None) -> Path | None:
    candidates = [Path(explicit)] if explicit else []
    candidates += [Path(sys.executable).parent / "mlserver",
                   ROOT / ".venv-mlserver" / "bin" / "mlserver",
                   ROOT.parent / ".venv-mlserver" / "bin" / "mlserver"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    print("MLServer: not found; looked at " + ", ".join(str(p) for p in candidates))
    return None


def register(folder: Path, tracking_uri: str) -> None:
    """The folder logged and registered as mlc's trainer logs its model folder (the
    pyfunc's artifacts), alias `production`."""
    import mlflow

    from mlc.runtime import model_format
    from mlc.runtime.train.tracking import PYFUNC_CODE

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE),
                                       artifacts={model_format.ARTIFACT_KEY: str(folder)},
                                       pip_requirements=["numpy"])
    version = mlflow.register_model(info.model_uri, MODEL)
    mlflow.MlflowClient().set_registered_model_alias(MODEL, "production", version.version)


def serve_mlc(tracking_uri: str, port: int, log_dir: str) -> None:
    import logging

    from mlc.runtime.serve.server import ServeApp, ServeSettings, make_server

    logging.basicConfig(level=logging.WARNING)
    settings = ServeSettings(endpoint="bench", model_uri=f"models:/{MODEL}@production",
                             tracking_uri=tracking_uri, model_names=(MODEL,),
                             max_batch_size=32, max_latency=0.002, max_queue=1024,
                             prediction_log_uri=log_dir, prediction_log_sample=0.0)
    make_server(ServeApp(settings), "127.0.0.1", port, log_level="warning").run()


def mlserver_folder(work: Path, folder: Path, port: int) -> Path:
    """MLServer's settings and model settings for the same trees (SKLEARN_FILE)."""
    root = work / "mlserver"
    model = root / MODEL
    model.mkdir(parents=True)
    shutil.copyfile(folder.parent / SKLEARN_FILE, model / "model.json")
    (root / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": bench_serve.free_port(),
        "metrics_port": bench_serve.free_port(), "parallel_workers": 0,
        "host": "127.0.0.1"}))
    (model / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_xgboost.XGBoostModel",
        "parameters": {"uri": "./model.json", "version": "1"}}))
    return root


def mlc_request(features: list[str], row: np.ndarray) -> bytes:
    body = {"instances": [{f: (None if np.isnan(v) else float(v))
                           for f, v in zip(features, row, strict=True)}]}
    return bench_serve.http_request("/predict", json.dumps(body).encode())


def mlserver_request(row: np.ndarray) -> bytes:
    body = {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP32",
                        "data": [None if np.isnan(v) else float(v) for v in row]}],
            "outputs": [{"name": "predict_proba"}]}
    return bench_serve.http_request(f"/v2/models/{MODEL}/infer", json.dumps(body).encode())


def answers_agree(features, rows, mlc_port: int, mlserver_port: int) -> float:
    """The largest difference of P(positive) between the two on the sample rows."""
    import urllib.error
    import urllib.request

    def post(port, request: bytes):
        head, _, body = request.partition(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:  # the server's reason, not only its code
            raise SystemExit(f"{path} on port {port}: {exc.code} {exc.read()[:500]!r}") from exc

    worst = 0.0
    for row in rows[:32]:
        ours = post(mlc_port, mlc_request(features, row))["predictions"][0]
        theirs = post(mlserver_port, mlserver_request(row))["outputs"][0]["data"]
        worst = max(worst, abs(float(ours) - float(theirs[-1])))
    return worst


class _Lane(bench_shadow._Lane):
    """bench_shadow's lane, with one request per server (their protocols differ)."""

    def _send(self) -> None:
        self.sent = time.perf_counter()
        self.conns[self.turn].send(self.request[self.turn])


async def _drive(ports: list[int], requests: list[bytes], lanes: int, warmup: float,
                 duration: float) -> dict:
    loop = asyncio.get_running_loop()
    n = len(ports)
    stats = {"latencies": [[] for _ in ports], "errors": [0] * n, "recording": False,
             "stop": False}
    done = [loop.create_future() for _ in range(lanes)]
    all_lanes = [_Lane(requests, n, stats, d) for d in done]
    for lane in all_lanes:
        for i, port in enumerate(ports):
            await loop.create_connection(
                lambda lane=lane, i=i: bench_shadow._LaneConn(lane, i), "127.0.0.1", port)
    for k, lane in enumerate(all_lanes):
        lane.start(k % n)
    await asyncio.sleep(warmup)
    stats["recording"] = True
    start = time.perf_counter()
    await asyncio.sleep(duration)
    stats["recording"] = False
    elapsed = time.perf_counter() - start
    stats["stop"] = True
    await asyncio.wait(done, timeout=10)
    return {"latencies": stats["latencies"], "errors": stats["errors"], "elapsed": elapsed}


def measure(ports, requests, clients: int, warmup: float, duration: float, reps: int) -> dict:
    pooled = [[] for _ in ports]
    errors = [0] * len(ports)
    elapsed = 0.0
    for _ in range(reps):
        out = asyncio.run(_drive(ports, requests, clients, warmup, duration))
        for i in range(len(ports)):
            pooled[i].extend(out["latencies"][i])
            errors[i] += out["errors"][i]
        elapsed += out["elapsed"]
    return {"lat": [np.asarray(p) for p in pooled], "errors": errors, "elapsed": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--mlserver", help="the `mlserver` executable to run")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlc-bench-engines-"))
    procs: list[subprocess.Popen] = []
    try:
        folder = work / "model"
        features, rows = train(folder)
        why = mlc_can_load(folder)
        print(f"mlc: {'loads the XGBoost folder' if why is None else 'cannot load it: ' + why}")
        mlserver = find_mlserver(args.mlserver)
        if mlserver is not None:
            print(f"MLServer: {mlserver}")
        if why is not None or mlserver is None:
            print("not measured: both servers must load the model (see above)")
            return EXIT_NOT_READY
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        register(folder, tracking)
        mlc_port, ml_port = bench_serve.free_port(), bench_serve.free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true"}
        code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_engines; "
                f"bench_engines.serve_mlc({tracking!r}, {mlc_port}, {str(work / 'log')!r})")
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env,
                                      start_new_session=True))
        bench_serve.wait_http(mlc_port, "/v2/health/ready", procs[-1])
        procs.append(subprocess.Popen([str(mlserver), "start",
                                       str(mlserver_folder(work, folder, ml_port))],
                                      env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        bench_serve.wait_http(ml_port, f"/v2/models/{MODEL}/ready", procs[-1])
        worst = answers_agree(features, rows, mlc_port, ml_port)
        print(f"the two answer alike: largest difference of P(positive) {worst:.2e}")
        row = rows[1]
        requests = [mlc_request(features, row), mlserver_request(row)]
        results = []
        for clients in args.clients:
            r = measure([mlc_port, ml_port], requests, clients, args.warmup, args.duration,
                        args.reps)
            (mlc_lat, ml_lat), elapsed = r["lat"], r["elapsed"]
            ratio, low, high = bench_shadow.p99_ratio_interval(ml_lat, mlc_lat)
            row_out = {"clients": clients}
            for name, lat, errors in (("mlc", mlc_lat, r["errors"][0]),
                                      ("mlserver", ml_lat, r["errors"][1])):
                row_out[name] = {"p50_ms": float(np.percentile(lat, 50) * 1e3),
                                 "p99_ms": float(np.percentile(lat, 99) * 1e3),
                                 "rps": lat.size / elapsed, "requests": int(lat.size),
                                 "errors": errors}
                print(f"clients {clients:>2}  {name:<8}  p50 {row_out[name]['p50_ms']:7.3f} ms"
                      f"  p99 {row_out[name]['p99_ms']:7.3f} ms  {row_out[name]['rps']:8.1f}"
                      f" req/s  errors {errors}")
            row_out["p99_ratio"] = {"mlserver/mlc": ratio, "low": low, "high": high}
            row_out["p50_ratio"] = row_out["mlserver"]["p50_ms"] / row_out["mlc"]["p50_ms"]
            print(f"clients {clients:>2}  mlserver/mlc  p99 {ratio:.2f} (95% {low:.2f}..{high:.2f})"
                  f"  p50 {row_out['p50_ratio']:.2f}")
            results.append(row_out)
        if args.json:
            Path(args.json).write_text(json.dumps({"max_difference": worst,
                                                   "rows": results}, indent=2) + "\n")
        return 0
    finally:
        for proc in procs:
            bench_serve.stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
