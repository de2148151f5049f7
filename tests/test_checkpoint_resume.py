"""Checkpoints: a training run killed at any point resumes and ends with the same weights.

The main test kills a real training process with SIGKILL once a checkpoint exists, starts
it again, and compares every tensor of the final state_dict with an uninterrupted run's.
Dropout is on, so the random number generators' states must be restored too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mlc.runtime import model_format
from mlc.runtime.train.checkpoints import CheckpointStore, fingerprint
from mlc.runtime.train.trainer import DEFAULTS, Arrays, fit

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np, torch
    from mlc.runtime import model_format
    from mlc.runtime.train.checkpoints import CheckpointStore
    from mlc.runtime.train.trainer import DEFAULTS, Arrays, fit

    out, location, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.5, 2000) > 0).astype(np.int64)
    spec = model_format.make_spec(
        task="classification", features=list("abcde"), feature_refs=list("abcde"),
        hidden_layers=[16, 8], dropout=0.1, fill=[0.0] * 5, mean=[0.0] * 5, std=[1.0] * 5,
        label="y", classes=[0, 1])
    hp = dict(DEFAULTS, hidden_layers=[16, 8], dropout=0.1, epochs=4, batch_size=32, seed=3)
    arrays = Arrays(x[:1800], y[:1800], x[1800:], y[1800:])
    result = fit(spec, arrays, hp, device=torch.device("cpu"),
                 store=CheckpointStore(location, "run"), every=10,
                 on_step=lambda step: time.sleep(pause))
    torch.save(result.state_dict, out)
    print(json.dumps({"steps": result.steps, "resumed_from": result.resumed_from}))
""")


# small models train fastest on one thread (conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(script: Path, out: Path, location: Path, pause: float) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLC_DEVICE": "cpu"}
    return subprocess.Popen([sys.executable, str(script), str(out), str(location), str(pause)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    # the reference run and the run to kill start together: two cores, half the wall time
    reference = _train(script, tmp_path / "reference.pt", tmp_path / "ckpt-reference", 0.0)
    victim = _train(script, tmp_path / "resumed.pt", tmp_path / "ckpt", 0.01)
    store = CheckpointStore(tmp_path / "ckpt", "run")
    deadline = time.monotonic() + 240
    while not [s for s in store.steps() if s >= 50]:
        assert victim.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    killed_at = max(store.steps())

    resumed = _finish(_train(script, tmp_path / "resumed.pt", tmp_path / "ckpt", 0.0))
    expected = _finish(reference)
    assert expected["resumed_from"] == 0
    assert killed_at <= resumed["resumed_from"] < expected["steps"]
    assert resumed["steps"] == expected["steps"] == 4 * 57  # 1800 rows / 32, 4 epochs

    a = torch.load(tmp_path / "reference.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resuming"


def _problem(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 2] > 0).astype(np.int64)
    spec = model_format.make_spec(
        task="classification", features=list("abcd"), feature_refs=list("abcd"),
        hidden_layers=[8], dropout=0.2, fill=[0.0] * 4, mean=[0.0] * 4, std=[1.0] * 4,
        label="y", classes=[0, 1])
    return spec, Arrays(x[:500], y[:500], x[500:], y[500:])


class Crash(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["off", "bf16"])
def test_resuming_in_process_after_a_crash_at_each_phase_of_an_epoch(tmp_path, precision):
    spec, arrays = _problem()
    hp = dict(DEFAULTS, hidden_layers=[8], dropout=0.2, epochs=3, batch_size=64, seed=11,
              mixed_precision=precision)
    cpu = torch.device("cpu")
    expected = fit(spec, arrays, hp, device=cpu).state_dict
    for crash_at in (5, 8, 17):  # mid-epoch, the epoch's last batch, the next epoch
        store = CheckpointStore(tmp_path / f"{precision}-{crash_at}", "run")

        def crash(step: int, at: int = crash_at) -> None:
            if step == at:
                raise Crash

        with pytest.raises(Crash):
            fit(spec, arrays, hp, device=cpu, store=store, every=4, on_step=crash)
        result = fit(spec, arrays, hp, device=cpu, store=store, every=4)
        assert result.resumed_from == crash_at // 4 * 4
        for name, tensor in expected.items():
            assert torch.equal(tensor, result.state_dict[name]), (precision, crash_at, name)


def test_the_store_keeps_the_newest_two_and_skips_a_torn_file(tmp_path):
    store = CheckpointStore(tmp_path, "abc", keep=2)
    for step in (10, 20, 30):
        store.save(step, {"step": step, "weights": torch.full((2,), float(step))})
    assert store.steps() == [20, 30]
    assert not list((tmp_path / "abc").glob("*.tmp"))
    assert store.latest()["step"] == 30
    (tmp_path / "abc" / "step-000000030.pt").write_bytes(b"torn write")
    assert store.latest()["step"] == 20
    store.clear()
    assert store.steps() == [] and not (tmp_path / "abc").exists()
    assert store.latest() is None


def test_an_object_store_uri_goes_through_pyarrow_filesystems(tmp_path):
    # file:// takes the same code path as s3:// or gs:// (pyarrow.fs), without a network
    store = CheckpointStore((tmp_path / "bucket").as_uri(), "abc", keep=2)
    for step in (5, 10, 15):
        store.save(step, {"step": step})
    assert store.steps() == [10, 15]
    assert sorted(p.name for p in (tmp_path / "bucket" / "abc").iterdir()) == \
        ["step-000000010.pt", "step-000000015.pt"]
    assert store.latest()["step"] == 15
    store.clear()
    assert store.steps() == [] and store.latest() is None


def test_a_new_run_never_resumes_an_old_runs_checkpoint():
    base = fingerprint("snapshot-a", {"epochs": 5}, {"features": ["x"]})
    assert base == fingerprint("snapshot-a", {"epochs": 5}, {"features": ["x"]})
    assert base != fingerprint("snapshot-b", {"epochs": 5}, {"features": ["x"]})
    assert base != fingerprint("snapshot-a", {"epochs": 6}, {"features": ["x"]})
