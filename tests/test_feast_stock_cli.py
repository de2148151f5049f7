"""The output tree's Feast repo used by stock `feast`, as docs/feast.md says: from the project
root, MLC_DATA_ROOT set, nothing of mlc imported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow


def _feast() -> str:
    found = Path(sys.executable).parent / "feast"
    if not found.is_file():
        pytest.skip("the feast console script is not installed (mlc[train])")
    return str(found)


def test_stock_feast_applies_and_materialises_the_compiled_repo(tmp_path):
    feast = _feast()
    root = tmp_path / "project"
    root.mkdir()
    for name in ("ml.yaml", "environments", "data"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLC_")}
    subprocess.run([sys.executable, "-m", "mlc", "compile", "-C", str(root), "--env", "dev"],
                   env=env, check=True, capture_output=True)
    repo = "deploy/dev/feast"
    # not imported from mlc, not told where data is: refused with the fix, not misread
    refused = subprocess.run([feast, "-c", repo, "apply"], cwd=root, env=env,
                             capture_output=True, text=True)
    assert refused.returncode != 0
    assert "set MLC_DATA_ROOT" in refused.stdout + refused.stderr
    env["MLC_DATA_ROOT"] = str(root)
    for args in (["apply"], ["materialize", "1970-01-02T00:00:00", "2030-01-01T00:00:00"],
                 ["feature-views", "list"]):
        done = subprocess.run([feast, "-c", repo, *args], cwd=root, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "customer" in done.stdout or "merchant" in done.stdout, done.stdout
    assert (root / "data" / "registry.db").is_file()
