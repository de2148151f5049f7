"""`mlc plan` reads the output folder's trees under the writers' lock; a lock it cannot take
is a located error (MLC024, exit 1), never a silent unlocked read.

The read-only cases need a read-only folder, which root (these tests often run as root)
only gets from a read-only mount: they bind-mount the output folder read-only where the
test may mount, and skip with the reason where it may not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from mlc.cli import main
from mlc.compiler.plan.read_lock import LOCK_FAILED
from mlc.compiler.swap import JOURNAL_NAME
from mlc.compiler.write import LOCK_NAME, output_lock

from .bad_inputs import BASE
from .conftest import write_project


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, Path]:
    """One project and its compiled output folder, shared by the module (copied per test)."""
    work = tmp_path_factory.mktemp("plan-lock")
    project = write_project(work / "project", {"ml.yaml": BASE})
    assert main(["compile", "-C", str(project), "--out", str(work / "out")]) == 0
    assert (work / "out" / LOCK_NAME).is_file()
    return project, work / "out"


@pytest.fixture
def out(compiled, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(compiled[1], copy, symlinks=True)
    return copy


def plan(project: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(["plan", "-C", str(project), "--out", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def located(err: str, code: str) -> str:
    lines = err.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"error[{code}]"))
    return lines[at + 1].split("-->")[1].strip()


def test_plan_takes_the_lock(compiled, out, capsys):
    code, err = plan(compiled[0], out, capsys)
    assert code == 0, err


@pytest.mark.parametrize("shape", ["folder", "dangling-link"])
def test_a_lock_that_cannot_be_opened_is_a_located_error(compiled, out, capsys, shape):
    (out / LOCK_NAME).unlink()
    if shape == "folder":
        (out / LOCK_NAME).mkdir()
    else:
        (out / LOCK_NAME).symlink_to(out / "no-such-folder" / "lock")
    code, err = plan(compiled[0], out, capsys)
    assert code == 1
    assert located(err, LOCK_FAILED) == str(out / LOCK_NAME), err
    assert "--base-ref" in err  # the help names a way to plan without the lock


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` bind-mounted read-only at a sibling path; skips where mounting is refused."""
    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only mount needs root and mount(8)")
    mount = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(view)],
                           capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"this machine refuses a bind mount: {mount.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True,
                       capture_output=True)
        with pytest.raises(OSError):
            (view / "probe").write_text("x")
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=False, capture_output=True)


def test_read_only_folder_with_its_lock_file_is_read_under_a_shared_lock(compiled, out,
                                                                          capsys):
    with read_only(out) as view:
        code, err = plan(compiled[0], view, capsys)
        assert code == 0, err

        # the shared lock waits for a writer that holds the lock on the writable path
        result: list = []
        with output_lock(out):
            reader = threading.Thread(target=lambda: result.append(
                main(["plan", "-C", str(compiled[0]), "--out", str(view)])), daemon=True)
            reader.start()
            reader.join(1.0)
            assert reader.is_alive() and result == [], "the plan read under a writer"
        reader.join(60)
        assert result == [0]
        capsys.readouterr()


def test_read_only_folder_without_a_lock_file(compiled, out, capsys):
    (out / LOCK_NAME).unlink()
    with read_only(out) as view:
        code, err = plan(compiled[0], view, capsys)
    assert code == 1 and located(err, LOCK_FAILED) == str(view / LOCK_NAME)
    assert "does not exist, and mlc may not create it (Read-only file system)" in err


def test_read_only_folder_with_an_interrupted_write(compiled, out, capsys):
    (out / JOURNAL_NAME).write_text('{"environments": {}}\n')
    with read_only(out) as view:
        code, err = plan(compiled[0], view, capsys)
    assert code == 1 and located(err, LOCK_FAILED) == str(view / LOCK_NAME)
    assert "a write was interrupted" in err
