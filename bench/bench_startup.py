"""Cold start of the `mlc` command: `mlc validate` on the bundled example, side by side with
a baseline checkout's, `mlc --version` and `python -c pass` (the interpreter's own start-up).

    python bench/bench_startup.py                         # 15 rounds; baseline /work/main
    python bench/bench_startup.py --runs 5 --baseline ../main-checkout
    python bench/bench_startup.py --baseline /tmp/a --baseline /tmp/b   # several, e.g. one
                                                  # `git archive <commit> | tar -x` per step

Each round runs every command once, as a fresh process, in rotating order, so that other load
on the machine lands on all of them alike. Printed per command: the median and spread of
wall time and of CPU time (user + system, from wait4; the figure to compare on a shared
machine), and the ratio to the (first) baseline's `mlc validate`. All trees run with bytecode
caching on (in a temporary PYTHONPYCACHEPREFIX, so no tree is written to), as an installed
package does, and with their own temporary MLC_CACHE_DIR (mlc/model_cache.py), warmed by one run
first; `first validate` is this tree's run with an empty cache (the one-off build that fills
it). Also prints the heaviest imports of this tree's `mlc validate` (`python -X importtime`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `cmd`, in the folder of its tree (`-m mlc`
    imports mlc from the working folder first)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            cwd=env["PYTHONPATH"])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def environment(tree: Path, pycache: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(tree), PYTHONPYCACHEPREFIX=str(pycache), MLC_CACHE_DIR=str(cache))
    return env


def heaviest_imports(cmd: list[str], env: dict[str, str], top: int) -> list[tuple[str, float]]:
    """(module, cumulative seconds) of the imports up to two levels deep that cost most."""
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False, text=True, env=env,
                          cwd=env["PYTHONPATH"])
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if cumulative.strip().isdigit() and depth <= 2:
            rows.append(("  " * depth + name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.3f}s [{min(values):.3f}-{max(values):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", type=Path, action="append",
                        help="a checkout of a tree to compare with (default /work/main); "
                        "may be given more than once")
    args = parser.parse_args()
    baselines = [b.resolve() for b in args.baseline or [Path("/work/main")]]
    for baseline in baselines:
        if not (baseline / "mlc").is_dir():
            sys.exit(f"no mlc tree at {baseline}")
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="mlc-bench-startup-") as tmp:
        base = Path(tmp)
        ours = environment(REPO, base / "pyc", base / "cache-ours")
        validate = [py, "-m", "mlc", "validate", "-C", str(REPO)]
        commands = {
            "python -c pass": ([py, "-c", "pass"], ours),
            "mlc --version": ([py, "-m", "mlc", "--version"], ours),
        }
        for i, baseline in enumerate(baselines):
            name = "validate (baseline)" if len(baselines) == 1 else f"validate ({baseline.name})"
            commands[name] = (validate, environment(baseline, base / "pyc", base / f"cache-{i}"))
        reference_name = list(commands)[2]
        commands["validate (this tree)"] = (validate, ours)
        # the first run of each tree compiles its bytecode and fills its model cache
        for cmd, env in list(commands.values())[2:-1]:
            once(cmd, env)
        first = once(validate, ours)
        cold = []
        for _ in range(max(3, args.runs // 5)):  # this tree with an empty model cache
            cold_cache = Path(tempfile.mkdtemp(dir=base))
            cold.append(once(validate, {**ours, "MLC_CACHE_DIR": str(cold_cache)}))
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        names = list(commands)
        for round_ in range(args.runs):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                cmd, env = commands[name]
                times[name].append(once(cmd, env))
        times["first validate"] = [first, *cold]
        reference = statistics.median(cpu for _, cpu in times[reference_name])
        print(f"{args.runs} rounds; load average {os.getloadavg()[0]:.1f}; "
              f"baseline {', '.join(map(str, baselines))}")
        print(f"{'command':<22} {'wall median [min-max]':>26} {'CPU median [min-max]':>26} "
              f"{'CPU vs baseline':>16}")
        for name, rows in times.items():
            walls, cpus = [w for w, _ in rows], [c for _, c in rows]
            ratio = statistics.median(cpus) / reference
            print(f"{name:<22} {spread(walls):>26} {spread(cpus):>26} {ratio:15.2f}x")
        print("\nheaviest imports of this tree's `mlc validate` (cumulative, one run):")
        for module, seconds in heaviest_imports(validate, ours, 12):
            print(f"  {seconds:6.3f}s  {module}")


if __name__ == "__main__":
    main()
