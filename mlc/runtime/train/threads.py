"""How many threads torch may use in a training step: the CPUs its pod may use, no more.

torch starts one intra-op thread per core it sees. In a pod that is every core of the node,
whatever the container's CPU limit, and on a shared machine every core, however busy: the
threads then wait on one another at each operation (the bundled example's small model trained
about 25x slower in CPU time on 2 busy cores with 2 threads than with one). So a step of the
train image uses

    MLC_TORCH_THREADS, when set (a whole number, at least 1);
    else torch's own choice, when OMP_NUM_THREADS is set (torch read it when it started);
    else the step's hardware CPU limit (its request when it has no limit), rounded down, at
    least 1, and at most the CPUs this process may run on (its affinity and its cgroup's
    CPU quota).

`mlc run` runs the same rule on the same IR: the dev overlay's `small` profile (500m) gives
one thread, as its pod would get. The step runtime calls `configure` before a torch step's
entry function (mlc/runtime/step.py); nothing else here imports torch.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

THREADS_ENV = "MLC_TORCH_THREADS"  # the serving runtime reads the same name
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cpu_cores(quantity: str | None) -> float | None:
    """A Kubernetes CPU quantity in cores (`500m` -> 0.5, `4` -> 4.0); None if unreadable."""
    if not quantity:
        return None
    text = str(quantity).strip()
    try:
        value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may run on: its affinity, capped by its cgroup's quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text("ascii").split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def step_cpus(project, step, cpus: int | None = None) -> float:
    """The CPU time `step` may use, in cores: its hardware's CPU limit (the request without
    one), at most the CPUs this process may run on."""
    cpus = usable_cpus() if cpus is None else cpus
    hardware = project.hardware.get(step.hardware)
    cores = None
    if hardware is not None:
        cores = cpu_cores(hardware.limits.get("cpu")) or cpu_cores(hardware.requests.get("cpu"))
    return float(cpus) if cores is None else min(float(cpus), cores)


def step_threads(project, step, environ: Mapping[str, str] | None = None,
                 cpus: int | None = None) -> int | None:
    """Intra-op threads for `step` of `project` (the IR); None leaves torch's own choice."""
    env = os.environ if environ is None else environ
    wanted = env.get(THREADS_ENV, "").strip()
    if wanted:
        try:
            return max(1, int(wanted))
        except ValueError:
            print(f"{THREADS_ENV}={wanted!r} is not a whole number; ignored", file=sys.stderr)
    if env.get("OMP_NUM_THREADS", "").strip():
        return None
    return max(1, math.floor(step_cpus(project, step, cpus)))


# the steps of the train image that run torch (a custom trainer's step runs its own command)
TORCH_STEPS = frozenset({"train", "search", "evaluate", "explain"})


def configure(ctx) -> int | None:
    """Set torch's intra-op threads for the step of `ctx` (a torch step of the train image);
    the count set, or None where torch keeps its own."""
    if ctx.step.runtime != "train" or ctx.step.kind not in TORCH_STEPS:
        return None
    threads = step_threads(ctx.project, ctx.step)
    if threads is None:
        return None
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def library_threads(ctx) -> int:
    """Threads for an XGBoost, LightGBM or scikit-learn step (they take a count, not an
    environment): the same rule as torch's, and OMP_NUM_THREADS where set instead of torch's
    own choice."""
    threads = step_threads(ctx.project, ctx.step)
    if threads is not None:
        return threads
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "").strip()))
    except ValueError:
        return max(1, math.floor(step_cpus(ctx.project, ctx.step)))
