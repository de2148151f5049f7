"""Checkpoints: everything a killed training run needs to end with the same weights.

A checkpoint holds the model, optimizer, scheduler and grad-scaler states, every random
number generator the loop touches (torch, CUDA, numpy, Python), the step, and the data
position (epoch and batch within it). Resuming from one and training to the end gives
weights equal, tensor for tensor, to a run that was never interrupted
(tests/test_checkpoint_resume.py kills a real process to check this).

Layout: `<location>/<fingerprint>/step-000000200.pt`. The fingerprint hashes the data
snapshot, the hyperparameters and the network spec, so a new run with other data or
settings never resumes from an old run's files, while a retry of the same run does.
Writes are atomic: a local file goes through a temporary name and a rename; an object store
(s3://, gs://, through pyarrow.fs) makes an object visible only once its upload completes.
Files are read with `torch.load(weights_only=True)`: the RNG states are stored as tensors
and lists, so loading never unpickles code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^step-(\d{9})\.pt$")


def fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": np_state[1].astype(np.int64).tolist(), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(n["key"], dtype=np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointStore:
    """Checkpoints of one training run under a folder or an object-store URI."""

    def __init__(self, location: str | Path, run_key: str, keep: int = 2):
        self.keep = max(keep, 1)
        location = str(location)
        if "://" in location:
            from pyarrow import fs

            self._fs, base = fs.FileSystem.from_uri(location)
            self._base = f"{base.rstrip('/')}/{run_key}"
            self._local = None
        else:
            self._fs = None
            self._local = Path(location) / run_key
            self._base = str(self._local)

    @property
    def where(self) -> str:
        return self._base

    # -- listing ----------------------------------------------------------------------

    def steps(self) -> list[int]:
        if self._local is not None:
            names = [p.name for p in self._local.glob("step-*.pt")] \
                if self._local.is_dir() else []
        else:
            from pyarrow import fs

            infos = self._fs.get_file_info(fs.FileSelector(self._base, allow_not_found=True))
            names = [i.base_name for i in infos if i.type == fs.FileType.File]
        return sorted(int(m.group(1)) for n in names if (m := _NAME.match(n)))

    def _name(self, step: int) -> str:
        return f"step-{step:09d}.pt"

    # -- reading ----------------------------------------------------------------------

    def _read(self, step: int) -> bytes:
        if self._local is not None:
            return (self._local / self._name(step)).read_bytes()
        with self._fs.open_input_stream(f"{self._base}/{self._name(step)}") as fh:
            return fh.read()

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads; an unreadable one is skipped for the one before."""
        for step in reversed(self.steps()):
            try:
                return torch.load(io.BytesIO(self._read(step)), map_location="cpu",
                                  weights_only=True)
            except Exception:  # a torn or foreign file: fall back to the previous one
                continue
        return None

    # -- writing ----------------------------------------------------------------------

    def save(self, step: int, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        name = self._name(step)
        if self._local is not None:
            self._local.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._local, prefix=f".{name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self._local / name)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            self._fs.create_dir(self._base, recursive=True)
            with self._fs.open_output_stream(f"{self._base}/{name}") as fh:
                fh.write(data)
        for old in self.steps()[:-self.keep]:
            self._delete(old)

    def _delete(self, step: int) -> None:
        if self._local is not None:
            (self._local / self._name(step)).unlink(missing_ok=True)
        else:
            self._fs.delete_file(f"{self._base}/{self._name(step)}")

    def clear(self) -> None:
        """Remove this run's checkpoints (after the run finished and its model is saved)."""
        for step in self.steps():
            self._delete(step)
        if self._local is not None and self._local.is_dir():
            for leftover in self._local.glob(".step-*.tmp"):
                leftover.unlink(missing_ok=True)
            try:
                self._local.rmdir()
            except OSError:
                pass
