"""Shared fixtures: the repository root, the upstream schemas, and snapshot updating."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_SCHEMAS = ROOT.parent / "shared" / "schemas"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden trees and snapshot files from the current output "
                     "(never in CI)")


# The files that keep one xdist worker busiest, longest first (measured: docs/benchmarks.md,
# "The test suite"). Under `make test` they are handed out first, so that no long file starts
# when the other worker is nearly done.
LONGEST_FIRST = (
    "tests/test_cluster_path.py",
    "tests/test_serve_traffic.py",
)


def pytest_collection_modifyitems(config, items):
    """Under xdist (`make test`: `-n 2 --dist loadfile --no-loadscope-reorder`) the files go
    out in this order: LONGEST_FIRST, then every other file with a slow test, then the rest,
    each group by its files' number of tests (xdist's own order, which alone put the long
    files with few tests, tests/test_cluster_path.py's three, last and left one worker idle
    for minutes); each file's tests keep their order."""
    if not hasattr(config, "workerinput"):
        return  # one process: the order of the files changes nothing
    count: dict[str, int] = {}
    slow: set[str] = set()
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        count[path] = count.get(path, 0) + 1
        if item.get_closest_marker("slow") is not None:
            slow.add(path)
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}

    def key(item) -> tuple[int, bool, int]:
        path = item.nodeid.split("::", 1)[0]
        return rank.get(path, len(rank)), path not in slow, -count[path]

    items.sort(key=key)


@pytest.fixture
def one_torch_thread():
    """Small models train fastest on one thread, and a busy test machine makes more threads
    spin against each other; restored after each test. Modules that train use it for every
    test (`pytestmark`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mlflow_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}


def _restore_mlflow_environment(saved: dict[str, str]) -> None:
    """The MLFLOW_* variables as `saved` had them, and no registry URI set in-process."""
    for key in set(_mlflow_environment()) - set(saved):
        del os.environ[key]
    os.environ.update(saved)
    registry = sys.modules.get("mlflow.tracking._model_registry.utils")
    if registry is not None:
        registry._registry_uri = None


@pytest.fixture(autouse=True, scope="module")
def _module_mlflow_environment():
    """A module's fixtures may point MLflow at their store for all of the module's tests
    (`mlflow.set_registry_uri` sets MLFLOW_REGISTRY_URI too); that ends with the module, or a
    later module's client would read another test's registry (set up before `saved` below,
    such a variable survived every test's restore)."""
    saved = _mlflow_environment()
    yield
    _restore_mlflow_environment(saved)


@pytest.fixture(autouse=True)
def _fresh_mlflow_state():
    """MLflow keeps the tracking URI and the active experiment in process-global state; a
    test that points MLflow at its own temporary store must not inherit the previous test's
    experiment id (a runtime step or server is its own process, where this cannot happen)."""
    saved = _mlflow_environment()
    yield
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None:
        while fluent.active_run() is not None:
            fluent.end_run()
        fluent._active_experiment_id = None
        # back to "nothing set", as in a new process (an empty URI would mean ./mlruns)
        sys.modules["mlflow.tracking._tracking_service.utils"]._tracking_uri = None
    _restore_mlflow_environment(saved)


@pytest.fixture
def update_golden(request) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def root() -> Path:
    return ROOT


def write_project(folder: Path, files: dict[str, str]) -> Path:
    """Write a small project (file path -> text) into `folder` and return it."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def copy_example(tmp: Path) -> Path:
    """A copy of the bundled example (ml.yaml, its environments and data) in tmp/project."""
    import shutil

    root = tmp / "project"
    root.mkdir()
    for name in ("ml.yaml", "environments", "data"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
    return root
