"""Cold start of the `mlc` command: `mlc validate` on the bundled example and `mlc --version`,
each a fresh process, against `python -c pass` (the interpreter's own start-up).

    python bench/bench_startup.py             # 15 runs of each, interleaved; medians
    python bench/bench_startup.py --runs 5

Runs are interleaved (pass, version, validate, pass, ...) so that other load on the machine
lands on all three alike. Also prints the share of import time of the heaviest modules of
`mlc validate` (from `python -X importtime`), the place to look when the figure grows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "mlc --version": [sys.executable, "-m", "mlc", "--version"],
    "mlc validate": [sys.executable, "-m", "mlc", "validate", "-C", str(REPO)],
}


def once(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr.decode()[-2000:]}")
    return wall


def heaviest_imports(cmd: list[str], top: int) -> list[tuple[str, float]]:
    """(module, cumulative seconds) of the imports up to two levels deep that cost most."""
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if cumulative.strip().isdigit() and depth <= 2:
            rows.append(("  " * depth + name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO) + (os.pathsep + env if env else "")
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            times[name].append(once(cmd))
    base = statistics.median(times["python -c pass"])
    print(f"{'command':<16} {'median':>8} {'min':>8} {'minus python':>13}")
    for name, rows in times.items():
        median = statistics.median(rows)
        print(f"{name:<16} {median:7.3f}s {min(rows):7.3f}s {median - base:12.3f}s")
    print("\nheaviest imports of `mlc validate` (cumulative, one run):")
    for module, seconds in heaviest_imports(COMMANDS["mlc validate"], 12):
        print(f"  {seconds:6.3f}s  {module}")


if __name__ == "__main__":
    main()
