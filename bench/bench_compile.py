"""Compile, plan and validate at platform scale: generated projects of N models.

Each model has its own source, feature view (materialised hourly), training schedule, online
endpoint with a canary rollout and a drift check; there are three environments (dev,
staging, prod). For every N the script times, as a user would run them (a fresh `mlc`
process each time, so imports count):

* `mlc validate`;
* `mlc compile` into an empty output folder;
* `mlc plan` with no change, and after a one-field edit of one model;
* `kubectl kustomize` of every environment's output (skipped with the reason printed when
  kubectl is missing, or with --no-kustomize);

and prints per-model times, the growth exponent between the sizes (a least-squares slope of
log time over log N) and the peak RSS of each mlc process.

    python bench/bench_compile.py                 # N = 1, 10, 100
    python bench/bench_compile.py --sizes 1,10,100,300,1000 --no-kustomize --runs 1
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (1, 10, 100)

_HEAD = """\
apiVersion: mlc.dev/v1
kind: Project
metadata:
  name: platform
  version: 1.0.0
  team: platform-ml
  owners: [platform-ml@example.com]
images:
  train: ghcr.io/mlc-dev/mlc-train:0.1.0@sha256:{digest}
  serve: ghcr.io/mlc-dev/mlc-serve:0.1.0@sha256:{digest}
  drift: ghcr.io/mlc-dev/mlc-drift:0.1.0@sha256:{digest}
hardware:
  small: {{cpu: 500m, memory: 1Gi}}
  trainer: {{cpu: "2", memory: 4Gi}}
secrets:
  slack-webhook:
    kubernetes: {{name: alerting, key: slack-webhook-url}}
  drift-webhook-token:
    kubernetes: {{name: alerting, key: drift-token}}
entities:
  customer: {{joinKey: customer_id}}
"""

_SOURCE = """\
  src-{i}:
    type: file
    path: data/src-{i}.parquet
    timestampField: event_timestamp
    columns:
      - {{name: customer_id, type: int64, nullable: false}}
      - {{name: event_timestamp, type: unix_timestamp, nullable: false}}
      - {{name: f1, type: float64}}
      - {{name: f2, type: int64, min: 0}}
      - {{name: label, type: int64, allowed: [0, 1]}}
"""

_FEATURE = """\
  view_{i}:
    entities: [customer]
    source: src-{i}
    ttl: 2d
    fields:
      - {{name: f1, type: float64}}
      - {{name: f2, type: int64}}
    materialization: {{schedule: "15 * * * *"}}
"""

_MODEL = """\
  model-{i}:
    task: classification
    framework: torch
    inputs: {{features: [view_{i}]}}
    label: {{source: src-{i}, column: label}}
    training:
      builtin: {{hiddenLayers: [16], epochs: {epochs}}}
      hardware: trainer
      schedule: "0 3 * * 1"
    evaluation:
      gates:
        - {{metric: roc_auc, min: 0.7}}
"""

_ENDPOINT = """\
  api-{i}:
    model: model-{i}
    mode: online
    hardware: small
    autoscaling: {{minReplicas: 2, maxReplicas: 4, metric: rps, target: 100}}
    rollout:
      strategy: canary
      steps:
        - {{weight: 20, pause: 5m}}
      gates: {{maxLatencyP99: 200ms, maxErrorRate: 0.01}}
"""

_DRIFT = """\
    drift-{i}:
      endpoint: api-{i}
      current: {{window: 1d}}
      schedule: "0 * * * *"
      onDrift: {{action: alert}}
      routes: [slack]
"""

_TAIL = """\
  routes:
    slack:
      slack: {channel: "#ml-alerts", webhookSecret: slack-webhook}
  alerts:
    critical: [slack]
    warning: [slack]
  webhookSecret: drift-webhook-token
platform:
  argocd:
    repoUrl: https://github.com/example/platform-deploy.git
"""

_ENVIRONMENTS = {
    "dev": "platform:\n  namespace: ml-dev\n  development: true\n  imagePolicy: tag\n"
           "  featureStore:\n    onlineStore: {type: sqlite, path: data/online.db}\n",
    "staging": "platform:\n  namespace: ml-staging\n"
               "  featureStore:\n    registry: s3://ml-feast/staging/registry.db\n"
               "    onlineStore: {type: redis, connectionSecret: redis-url}\n"
               "  artifactRoot: s3://ml-artifacts/staging\n"
               "secrets:\n  redis-url:\n    kubernetes: {name: redis, key: url}\n",
    "prod": "platform:\n  namespace: ml-prod\n"
            "  featureStore:\n    registry: s3://ml-feast/prod/registry.db\n"
            "    onlineStore: {type: redis, connectionSecret: redis-url}\n"
            "  artifactRoot: s3://ml-artifacts/prod\n"
            "secrets:\n  redis-url:\n    kubernetes: {name: redis, key: url}\n",
}
# where the cluster environments find the Redis of the online store, and their data
_CLUSTER = ("  network:\n    egress:\n      - {namespace: redis, ports: [6379]}\n")


def project_text(n: int, *, epochs: int = 5) -> str:
    """The ml.yaml of an N-model project; `epochs` of model-0 is the field the edit changes."""
    parts = [_HEAD.format(digest="0" * 64), "sources:\n"]
    parts += [_SOURCE.format(i=i) for i in range(n)]
    parts.append("features:\n")
    parts += [_FEATURE.format(i=i) for i in range(n)]
    parts.append("models:\n")
    parts += [_MODEL.format(i=i, epochs=epochs if i == 0 else 5) for i in range(n)]
    parts.append("serving:\n")
    parts += [_ENDPOINT.format(i=i) for i in range(n)]
    parts.append("monitoring:\n  drift:\n")
    parts += [_DRIFT.format(i=i) for i in range(n)]
    parts.append(_TAIL)
    return "".join(parts)


def write_project(root: Path, n: int) -> None:
    (root / "environments").mkdir(parents=True, exist_ok=True)
    (root / "ml.yaml").write_text(project_text(n))
    for env, text in _ENVIRONMENTS.items():
        if env != "dev":
            text = text.replace("secrets:", _CLUSTER + "secrets:") + "sources:\n" + "".join(
                f"  src-{i}: {{path: s3://ml-data/{env}/src-{i}.parquet}}\n" for i in range(n))
        (root / "environments" / f"{env}.yaml").write_text(text)


def _mlc(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlc", *args]


def run_measured(cmd: list[str], ok: tuple[int, ...] = (0,), tree: Path = REPO
                 ) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and the peak RSS in MB of this command
    alone (via wait4's rusage), with `mlc` imported from `tree`. CPU time is the steadier
    figure on a shared machine."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    with tempfile.TemporaryFile() as log:  # a pipe could fill up: mlc prints every warning
        start = time.perf_counter()
        # in `tree`: `python -m` puts the working folder first on sys.path, before PYTHONPATH
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tree)
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, for this child's rusage
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in ok:
            log.seek(0)
            sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n"
                     f"{log.read().decode(errors='replace')[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure(n: int, runs: int, kustomize: str | None, tree: Path = REPO,
            results: dict[str, list[tuple[float, float, float]]] | None = None
            ) -> dict[str, tuple[float, float, float]]:
    """{step: (median wall seconds, median CPU seconds, max peak RSS MB)} for one size, of
    the runs in `results` (extended) and `runs` more, with mlc from `tree`."""
    results = {} if results is None else results
    with tempfile.TemporaryDirectory(prefix=f"mlc-bench-{n}-") as tmp:
        root = Path(tmp) / "project"
        write_project(root, n)
        out = root / "deploy"
        c = ("-C", str(root))
        for _ in range(runs):
            shutil.rmtree(out, ignore_errors=True)
            steps = [("validate", _mlc("validate", *c), (0,)),
                     ("compile", _mlc("compile", *c), (0,)),
                     ("plan", _mlc("plan", *c, "--detailed-exitcode"), (0,))]
            for name, cmd, ok in steps:
                results.setdefault(name, []).append(run_measured(cmd, ok, tree))
            (root / "ml.yaml").write_text(project_text(n, epochs=7))
            results.setdefault("plan-edit", []).append(
                run_measured(_mlc("plan", *c, "--detailed-exitcode"), (2,), tree))
            (root / "ml.yaml").write_text(project_text(n))
        if kustomize:
            for _ in range(runs):
                start = time.perf_counter()
                for env in _ENVIRONMENTS:
                    subprocess.run([kustomize, "kustomize", str(out / env)], check=True,
                                   stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - start
                results.setdefault("kustomize", []).append((wall, float("nan"), 0.0))
    return {step: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows),
                   max(r[2] for r in rows))
            for step, rows in results.items()}


def creation_probe(count: int = 500) -> str:
    """What creating `count` small files costs in the folder the projects go to.

    A compile creates a few thousand (2,700 per environment at N = 100) and its CPU time
    includes the kernel's. On ext4, allocating an inode skips the ones freed in the last
    seconds (`recently_deleted`, which reads each candidate's inode block), so right after
    thousands of deletions (the previous run's tree, another job's) a creation cost up to
    half a millisecond of kernel CPU here instead of 20 us: seconds of a compile's CPU time
    that are the disk's history, not mlc's work."""
    with tempfile.TemporaryDirectory(prefix="mlc-bench-probe-") as tmp:
        start = os.times()
        for i in range(count):
            fd = os.open(os.path.join(tmp, f"f{i}.yaml"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         0o644)
            os.write(fd, b"x" * 4096)
            os.close(fd)
        end = os.times()
    per_file = (end.user + end.system - start.user - start.system) / count
    return (f"projects under {tempfile.gettempdir()}: creating a file there costs "
            f"{per_file * 1e6:.0f} us of CPU")


def phases(n: int) -> None:
    """CPU seconds of each pass of one compile of an N-model project, in this process."""
    sys.path.insert(0, str(REPO))
    start = time.process_time()
    import mlc.compiler.backends  # noqa: F401  (the imports count)
    import mlc.compiler.render  # noqa: F401
    from mlc.compiler import pipeline
    from mlc.compiler.diagnostics import Diagnostics
    from mlc.compiler.pipeline import select_environments
    from mlc.compiler.write import write_environments

    spent = {"imports": time.process_time() - start}
    collecting = {"started": 0.0, "spent": 0.0}

    def collector(phase: str, info: dict) -> None:
        now = time.process_time()
        if phase == "start":
            collecting["started"] = now
        else:
            collecting["spent"] += now - collecting["started"]

    gc.callbacks.append(collector)

    def charge(name: str, since: float) -> None:
        spent[name] = spent.get(name, 0.0) + time.process_time() - since

    with tempfile.TemporaryDirectory(prefix=f"mlc-phases-{n}-") as tmp:
        root = Path(tmp) / "project"
        write_project(root, n)
        diags, trees = Diagnostics(), {}
        # as compile_project does (older trees without it: as it was)
        settled = getattr(pipeline, "settled_between_passes", contextlib.nullcontext)
        with settled() as settle:
            for env in select_environments(root, None, diags):
                trees[env] = one_environment(root, env, diags, charge)
                if settle:
                    settle()
        t, wall = time.process_time(), time.perf_counter()
        write_environments(root / "deploy", trees, diags=Diagnostics())
        charge("write", t)
        wall = time.perf_counter() - wall
    print(f"one compile of {n} models x {len(trees)} environments, CPU seconds:")
    for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds:7.2f}  {name}")
    print(f"  {sum(spent.values()):7.2f}  total (write wall time: {wall:.2f} s; of the total, "
          f"{collecting['spent']:.2f} s in the cyclic garbage collector)")


def one_environment(root: Path, env: str, diags, charge) -> dict[str, bytes]:
    from mlc.compiler.backends import BACKENDS, PACKAGERS
    from mlc.compiler.pipeline import check_environment
    from mlc.compiler.render import render

    t = time.process_time()
    project = check_environment(root, env, diags)
    charge("load + validate + resolve", t)
    files: list = []
    for backend in BACKENDS:
        t = time.process_time()
        files.extend(backend(project))
        charge("emit: " + backend.__module__.rsplit(".", 1)[-1], t)
    for packager in PACKAGERS:
        t = time.process_time()
        files.extend(packager(project, files))
        charge("emit: " + packager.__module__.rsplit(".", 1)[-1], t)
    t = time.process_time()
    tree = render(files)
    charge("render", t)
    return tree


def compare(sizes: list[int], runs: int, baseline: Path) -> None:
    """CPU seconds of every step, this tree against `baseline`, measured alternately."""
    steps = ["validate", "compile", "plan", "plan-edit"]
    print(f"CPU seconds (user + system), median of {runs} run(s) [min-max]; baseline: "
          f"{baseline}")
    print(f"{'N':>5} {'step':>10} {'baseline':>22} {'this tree':>22} {'ratio':>6}  peak RSS")
    for n in sizes:
        rows: dict[Path, dict[str, list[tuple[float, float, float]]]] = {baseline: {}, REPO: {}}
        for _ in range(runs):
            for tree in (baseline, REPO):
                measure(n, 1, None, tree, rows[tree])
        for step in steps:
            cells, medians = [], []
            for tree in (baseline, REPO):
                cpu = [r[1] for r in rows[tree][step]]
                medians.append(statistics.median(cpu))
                cells.append(f"{medians[-1]:7.2f} [{min(cpu):.2f}-{max(cpu):.2f}]")
            rss = "/".join(f"{max(r[2] for r in rows[t][step]):.0f}" for t in (baseline, REPO))
            print(f"{n:>5} {step:>10} {cells[0]:>22} {cells[1]:>22} "
                  f"{medians[1] / medians[0]:6.2f}  {rss} MB", flush=True)


def growth(sizes: list[int], times: list[float]) -> float | None:
    """Least-squares slope of log(time) over log(N): 1.0 is linear."""
    if len(sizes) < 2:
        return None
    xs, ys = [math.log(n) for n in sizes], [math.log(t) for t in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
            / sum((x - mx) ** 2 for x in xs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="comma-separated model counts (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs per size; medians shown")
    parser.add_argument("--no-kustomize", action="store_true",
                        help="skip `kubectl kustomize` (slow for large N: it grows as N^1.5)")
    parser.add_argument("--phases", action="store_true", help="instead: CPU time of each "
                        "compiler pass for the first size, in one process")
    parser.add_argument("--baseline", metavar="TREE", help="also time mlc from this source "
                        "tree (e.g. a checkout of main), run by run alternately with this one, "
                        "and print CPU ratios")
    parser.add_argument("--write", metavar="DIR", help="only write the N-model project (the "
                        "first size) into DIR, for profiling")
    parser.add_argument("--workdir", metavar="DIR", help="generate the projects (and write "
                        "their output) under DIR instead of the system's temporary folder "
                        "(another filesystem); the file-creation probe printed first says "
                        "what creating a file costs there now")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.workdir:
        tempfile.tempdir = str(Path(args.workdir).resolve())
    if not args.write:
        print(creation_probe())
    if args.write:
        write_project(Path(args.write), sizes[0])
        return
    if args.phases:
        phases(sizes[0])
        return
    if args.baseline:
        compare(sizes, args.runs, Path(args.baseline).resolve())
        return
    kubectl = shutil.which("kubectl")
    kustomize = None
    if args.no_kustomize:
        print("kubectl kustomize: skipped (--no-kustomize)")
    elif kubectl is None:
        print("kubectl kustomize: skipped (kubectl is not on PATH)")
    else:
        kustomize = kubectl
    env = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO) + (os.pathsep + env if env else "")
    table: dict[int, dict[str, tuple[float, float, float]]] = {}
    steps = ["validate", "compile", "plan", "plan-edit"] + (["kustomize"] if kustomize else [])
    print("wall seconds / CPU seconds (user + system) per step, medians; per model: wall")
    print(f"{'N':>5} {'ml.yaml':>9} " + " ".join(f"{s:>24}" for s in steps) + "  peak RSS")
    for n in sizes:
        table[n] = measure(n, args.runs, kustomize)
        size = len(project_text(n).encode())
        cells = [f"{wall:6.2f}/{cpu:6.2f}s {1000 * wall / n:6.1f}ms/m"
                 for wall, cpu, _ in (table[n][s] for s in steps)]
        rss = max(r[2] for r in table[n].values())
        print(f"{n:>5} {size / 1000:>7.0f}kB " + " ".join(f"{c:>24}" for c in cells)
              + f"  {rss:6.0f} MB", flush=True)
    big = [n for n in sizes if n >= 10] or sizes
    print("growth exponent (N >= 10; 1.0 is linear): " + ", ".join(
        f"{s} {e:.2f}" for s in steps
        if (e := growth(big, [table[n][s][0] for n in big])) is not None))
    print("CPU growth exponent: " + ", ".join(
        f"{s} {e:.2f}" for s in steps if s != "kustomize"
        if (e := growth(big, [table[n][s][1] for n in big])) is not None))


if __name__ == "__main__":
    main()
