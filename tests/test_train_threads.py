"""A torch step's threads and its metrics sink follow the CPUs its pod may use
(mlc/runtime/train/threads.py), and the step runtime imports Feast without typeguard's
instrumentation (mlc/runtime/feast_import.py), keeping every other typeguard user checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime.step import build_context, run_step
from mlc.runtime.train import metric_log, threads

from .conftest import ROOT

PIPELINE = "train-fraud-classifier"


@pytest.fixture(scope="module")
def project():
    resolved = check_environment(ROOT, "dev", Diagnostics())
    assert resolved is not None
    return resolved


def with_cpu(project, profile: str, cpu: str | None, limit: str | None = None):
    hardware = project.hardware[profile]
    requests = {**hardware.requests, "cpu": cpu} if cpu else {
        k: v for k, v in hardware.requests.items() if k != "cpu"}
    limits = {**hardware.limits, "cpu": limit or cpu} if (limit or cpu) else {
        k: v for k, v in hardware.limits.items() if k != "cpu"}
    changed = hardware.model_copy(update={"requests": requests, "limits": limits})
    return project.model_copy(update={"hardware": {**project.hardware, profile: changed}})


def step(project, name: str):
    return next(s for s in project.pipelines[PIPELINE].steps if s.name == name)


def test_cpu_quantities():
    assert threads.cpu_cores("500m") == 0.5
    assert threads.cpu_cores("4") == 4.0
    assert threads.cpu_cores("1.5") == 1.5
    assert threads.cpu_cores(None) is None
    assert threads.cpu_cores("lots") is None
    assert threads.cpu_cores("0") is None


def test_threads_follow_the_steps_cpu_limit(project):
    train = step(project, "train")
    assert project.hardware[train.hardware].limits["cpu"] == "500m"  # dev: `small`
    assert threads.step_threads(project, train, {}, cpus=16) == 1
    big = with_cpu(project, "small", "2", limit="6500m")
    assert threads.step_threads(big, step(big, "train"), {}, cpus=16) == 6  # the limit, down
    assert threads.step_threads(big, step(big, "train"), {}, cpus=4) == 4  # at most the CPUs
    no_limit = with_cpu(project, "small", "3")
    no_limit = no_limit.model_copy(update={"hardware": {**no_limit.hardware, "small": (
        no_limit.hardware["small"].model_copy(update={"limits": {"memory": "1Gi"}}))}})
    assert threads.step_threads(no_limit, step(no_limit, "train"), {}, cpus=16) == 3  # request
    # the user's word wins: MLC_TORCH_THREADS, or torch's own reading of OMP_NUM_THREADS
    assert threads.step_threads(project, train, {"MLC_TORCH_THREADS": "3"}, cpus=16) == 3
    assert threads.step_threads(project, train, {"OMP_NUM_THREADS": "2"}, cpus=16) is None
    assert threads.step_threads(project, train, {"MLC_TORCH_THREADS": "x"}, cpus=16) == 1


def test_usable_cpus_reads_the_cgroup_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert threads.usable_cpus(quota) == 1
    quota.write_text("max 100000\n")
    assert threads.usable_cpus(quota) == affinity
    assert threads.usable_cpus(tmp_path / "missing") == affinity


def test_configure_sets_torch_threads_for_torch_steps_only(project, monkeypatch, tmp_path):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        env = {"MLC_RUN_DIR": str(tmp_path)}
        register = build_context(project, PIPELINE, "register", environ=env)
        assert threads.configure(register) is None
        assert torch.get_num_threads() == 2
        train = build_context(project, PIPELINE, "train", environ=env)
        assert threads.configure(train) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_step_the_runtime_runs_gets_its_threads(project, monkeypatch, tmp_path):
    """run_step sets the count before the entry function: a step that fails at once (no
    training data for evaluate) has still been given its pod's threads."""
    import torch

    from mlc.runtime.step import StepFailed

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    two = with_cpu(project, "default", "2")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ctx = build_context(two, PIPELINE, "evaluate", environ={"MLC_RUN_DIR": str(tmp_path)})
        with pytest.raises(StepFailed, match="run the train step first"):
            run_step(ctx)
        assert torch.get_num_threads() == min(2, threads.usable_cpus())
    finally:
        torch.set_num_threads(before)


def test_the_metrics_sink_is_a_thread_without_a_spare_core(tmp_path, monkeypatch):
    monkeypatch.delenv("MLC_METRICS_SINK", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sink = metric_log.start_sink(uri, 0.5)
    try:
        assert isinstance(sink, metric_log.ThreadSink)
    finally:
        sink.stop()
    monkeypatch.setenv("MLC_METRICS_SINK", "process")  # the user's choice wins
    sink = metric_log.start_sink(uri, 0.5)
    try:
        assert isinstance(sink, metric_log.ProcessSink)
        assert sink.pid is not None
    finally:
        sink.stop()


FEAST_PROBE = textwrap.dedent("""
    import json, sys
    from mlc.runtime import feast_import
    installed = feast_import.install()
    import feast
    from typeguard import TypeCheckError, typechecked

    def refused(make):
        try:
            make()
        except TypeCheckError:
            return True
        return False

    @typechecked
    def mine(x: int) -> int:
        return x

    print(json.dumps({
        "installed": installed,
        "feast_checked": refused(lambda: feast.Entity(name=1, join_keys=["k"])),
        "others_checked": refused(lambda: mine("a")),
        "again": feast_import.install(),
    }))
""")


def test_feast_imports_without_typeguard_instrumentation(tmp_path):
    pytest.importorskip("feast")
    probe = tmp_path / "probe.py"  # a file: typeguard reads the decorated function's source
    probe.write_text(FEAST_PROBE, "utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLC_FEAST_TYPECHECKS", None)
    done = subprocess.run([sys.executable, "-W", "ignore", str(probe)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # Feast's constructors no longer check their arguments' types; another library's
    # @typechecked still does, and installing twice changes nothing
    assert seen == {"installed": True, "feast_checked": False, "others_checked": True,
                    "again": True}


def test_feast_typechecks_can_be_kept(monkeypatch):
    import typeguard

    from mlc.runtime import feast_import

    before = typeguard.typechecked
    monkeypatch.setenv("MLC_FEAST_TYPECHECKS", "1")
    assert feast_import.install() is False
    assert typeguard.typechecked is before
