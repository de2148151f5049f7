"""`mlc run --env dev` on the bundled example, per step, against a baseline tree, side by side.

Each round runs `mlc run --env dev` once with this tree's mlc and once with the baseline's
(`--baseline`, default /work/main: the main branch's checkout), in alternating order, each
in a fresh copy of the example (no .mlc/ yet: a first run, as a new user's), in a process
of its own started the way the command starts and ends (`mlc.cli.entry`). Inside that process the
step runtime's `run_step` is timed per step: wall seconds and CPU seconds (the process's
own, plus the children it waited for, such as a metrics sender process). The whole run's
wall and CPU (compile included) are measured from outside.

The environment is the caller's less the thread settings a shell does not usually have
(OMP_NUM_THREADS, MLC_TORCH_THREADS, MLC_METRICS_SINK), so torch and the metrics sink make
their own choices, as for a user. Shared machines are noisy: the CPU seconds are the figures
other jobs blur least; wall seconds are shown with the load average of each run. Prints
the median and range per step and in all, and the ratio of medians; exit status 1 if this
tree's median wall is 20 s or more (the requirement).

    python bench/bench_run.py [--baseline /work/main] [--rounds 3]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ("ml.yaml", "environments", "data/transactions.parquet",
           "data/customer_daily.parquet", "data/merchant_daily.parquet")
DROPPED_ENV = ("OMP_NUM_THREADS", "MLC_TORCH_THREADS", "MLC_METRICS_SINK")
BUDGET_S = 20.0


def child(project: Path, out: Path) -> int:
    """In the timed process: `mlc run --env dev` with `run_step` timed per step."""
    from mlc import cli
    from mlc.runtime import step as runtime_step

    real = runtime_step.run_step
    steps: list[dict] = []

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def timed(ctx):
        wall, used = time.perf_counter(), cpu()
        try:
            return real(ctx)
        finally:
            steps.append({"pipeline": ctx.pipeline.name, "step": ctx.step.name,
                          "wall": time.perf_counter() - wall, "cpu": cpu() - used})

    runtime_step.run_step = timed
    real_main, result = cli.main, {"code": None}

    def main_(argv=None):
        result["code"] = real_main(argv)
        return result["code"]

    # the command's own entry, exit included (a tree may end its process its own way); the
    # figures are written by an exit handler, which every way of ending runs
    cli.main = main_
    atexit.register(lambda: out.write_text(json.dumps({**result, "steps": steps}), "utf-8"))
    sys.argv = ["mlc", "run", "--env", "dev", "-C", str(project)]
    cli.entry()
    return 0


def one(tree: Path, work: Path, name: str) -> dict:
    """One `mlc run` of `tree`'s mlc in a fresh copy of the example."""
    project = work / name
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    for item in EXAMPLE:
        source, target = ROOT / item, project / item
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    out = work / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["PYTHONPATH"] = str(tree)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                           str(project), str(out)], env=env, capture_output=True, text=True,
                          timeout=1800)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.read_text("utf-8")) if out.is_file() else {"code": None,
                                                                         "steps": []}
    if done.returncode != 0 or result["code"] not in (0, None):
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"mlc run failed with {tree}'s mlc (exit {result['code']})")
    result.update(wall=wall, load=load, cpu=(after.ru_utime + after.ru_stime)
                  - (before.ru_utime + before.ru_stime))
    shutil.rmtree(project)
    return result


def spread(values: list[float]) -> str:
    return (f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"
            if values else "-")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=Path("/work/main"),
                        help="the tree to compare with (its mlc/ is imported)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("PROJECT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(Path(args.child[0]), Path(args.child[1]))
    trees = {"this": ROOT, "baseline": args.baseline.resolve()}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory(prefix="mlc-bench-run-") as tmp:
        for i in range(args.rounds):
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            for label in order:
                got = one(trees[label], Path(tmp), label)
                runs[label].append(got)
                print(f"round {i + 1} {label:<8}: wall {got['wall']:6.2f} s  CPU "
                      f"{got['cpu']:6.2f} s  (load average {got['load']:.1f})", flush=True)
    keys = [(s["pipeline"], s["step"]) for s in runs["this"][0]["steps"]]
    print(f"\nmlc run --env dev, {args.rounds} rounds; median (min-max) seconds; "
          f"baseline {trees['baseline']}")
    print(f"  {'step':<36} {'CPU this':>20} {'CPU baseline':>20}  ratio | "
          f"{'wall this':>20} {'wall baseline':>20}")

    def per(label: str, key: tuple[str, str], what: str) -> list[float]:
        return [s[what] for r in runs[label] for s in r["steps"]
                if (s["pipeline"], s["step"]) == key]

    def ratio(a: list[float], b: list[float]) -> str:
        return f"{statistics.median(a) / statistics.median(b):5.2f}" if a and b and \
            statistics.median(b) > 0 else "    -"

    for key in keys:
        name = f"{key[0]}/{key[1]}"
        a, b = per("this", key, "cpu"), per("baseline", key, "cpu")
        print(f"  {name:<36} {spread(a):>20} {spread(b):>20}  {ratio(a, b)} | "
              f"{spread(per('this', key, 'wall')):>20} "
              f"{spread(per('baseline', key, 'wall')):>20}")
    totals = {label: {what: [r[what] for r in runs[label]] for what in ("cpu", "wall")}
              for label in trees}
    print(f"  {'whole run (compile included)':<36} {spread(totals['this']['cpu']):>20} "
          f"{spread(totals['baseline']['cpu']):>20}  "
          f"{ratio(totals['this']['cpu'], totals['baseline']['cpu'])} | "
          f"{spread(totals['this']['wall']):>20} {spread(totals['baseline']['wall']):>20}")
    loads = [r["load"] for label in trees for r in runs[label]]
    wall = statistics.median(totals["this"]["wall"])
    print(f"load average at the runs' starts: {min(loads):.1f}-{max(loads):.1f}; this tree's "
          f"median wall {wall:.1f} s (budget {BUDGET_S:.0f} s)")
    return 0 if wall < BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
