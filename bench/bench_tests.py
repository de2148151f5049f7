"""Test files' wall and CPU time, this checkout against a baseline checkout, side by side.

    python bench/bench_tests.py --baseline /path/to/main tests/test_cluster_path.py [--repeat 3]

Each round runs `pytest -n 0` on the same files in both checkouts at once (so that both see
the same load on a shared machine), each with its own checkout on PYTHONPATH, and records
the wall seconds and the CPU seconds of pytest and every process it waited for (servers,
pods). It prints each round, the medians and the ratios new / baseline. Only figures: no
threshold decides anything (the test suite's pass/fail never depends on time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(checkout: Path, files: list[str], out: dict, log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    script = ("import resource, subprocess, sys, time\n"
              "t = time.monotonic()\n"
              "code = subprocess.call(sys.argv[1:])\n"
              "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
              "print(f'@@ {code} {time.monotonic() - t:.2f} {r.ru_utime + r.ru_stime:.2f}')\n")
    argv = [sys.executable, "-c", script, sys.executable, "-m", "pytest", "-q",
            "-p", "no:cacheprovider", "-n", "0", *files]
    with open(log, "w") as f:
        done = subprocess.run(argv, cwd=checkout, env=env, stdout=subprocess.PIPE,
                              stderr=f, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    code, wall, cpu = next(x for x in reversed(lines) if x.startswith("@@ ")).split()[1:]
    out.update(code=int(code), wall=float(wall), cpu=float(cpu),
               summary=[x for x in lines if not x.startswith("@@ ")][-1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, type=Path, help="the other checkout")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    rounds: dict[str, list[dict]] = {"new": [], "baseline": []}
    logs = Path(tempfile.mkdtemp(prefix="bench-tests-"))
    for i in range(args.repeat):
        results = {"new": {}, "baseline": {}}
        threads = [threading.Thread(target=run, args=(checkout, args.files, results[name],
                                                      logs / f"{name}-{i}.log"))
                   for name, checkout in (("new", ROOT), ("baseline", args.baseline))]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name in rounds:
            r = results[name]
            rounds[name].append(r)
            print(f"round {i + 1} {name:8s} exit {r['code']} wall {r['wall']:7.1f} s "
                  f"cpu {r['cpu']:7.1f} s  {' '.join(r['summary'])[-80:]}")
        print(f"round {i + 1} took {time.monotonic() - start:.0f} s (logs: {logs})")
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu")}
           for name, rs in rounds.items()}
    for k in ("wall", "cpu"):
        spread = {n: (min(r[k] for r in rs), max(r[k] for r in rs)) for n, rs in rounds.items()}
        print(f"median {k}: new {med['new'][k]:.1f} s ({spread['new'][0]:.1f}-"
              f"{spread['new'][1]:.1f}), baseline {med['baseline'][k]:.1f} s "
              f"({spread['baseline'][0]:.1f}-{spread['baseline'][1]:.1f}), new / baseline "
              f"{med['new'][k] / med['baseline'][k]:.2f}")
    return 0 if all(r["code"] == 0 for rs in rounds.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
