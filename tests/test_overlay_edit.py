"""`mlc promote` and `mlc pin` edit an overlay in place: a link or a FIFO named like the
overlay is a located error, nothing outside the project is read or written, and a write
that fails leaves the overlay as it was.

Each case runs the real CLI (promote; pin where it reaches the same code before the
registry): exit 1, the located code, no traceback, the project unchanged. The rendered
diagnostics are snapshots in tests/snapshots/diagnostics/ (update with --update-golden).
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from mlc.cli import main
from mlc.compiler import overlay_edit

from .conftest import write_project
from .test_promote import PROD, PROJECT

SNAPSHOTS = Path(__file__).parent / "snapshots" / "diagnostics"
SECRET = "MLC_TEST_SECRET_VALUE_51c3"
OVERLAY = "environments/prod.yaml"


def _files(folder: Path) -> dict[str, bytes | str]:
    """Every entry under `folder`: a file's bytes, a link's target (links are not followed)."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        name = str(p.relative_to(folder))
        if p.is_symlink():
            out[name] = "-> " + os.readlink(p)
        elif p.is_file():
            out[name] = p.read_bytes()
    return out


def _run(args: list[str], capsys, timeout: float = 30) -> tuple[int, str, str]:
    """The CLI in a thread, so that a read that blocks fails the test instead of hanging it."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(main(args)), daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"mlc {args[0]} hung"
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return result[0], captured.out, captured.err


def _location(err: str, code: str) -> str:
    lines = err.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"error[{code}]"))
    return lines[at + 1].split("-->")[1].split("(at")[0].strip()


def _snapshot(name: str, err: str, project: Path, update: bool) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    text = err.replace(str(project) + "/", "").replace(str(project), "<project>")
    if update:
        path.write_text(text)
    assert path.exists(), f"no snapshot {name}: run pytest --update-golden"
    assert text == path.read_text()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project", PROJECT)


def _refused(project: Path, capsys, code: str, *, command: str = "promote") -> str:
    before = _files(project.parent)
    args = ["promote", "-C", str(project), "staging", "prod"] if command == "promote" else \
        ["pin", "-C", str(project), "prod", "--tracking-uri", "sqlite:///nowhere.db"]
    status, _, err = _run(args, capsys)
    assert status == 1, err
    assert _location(err, code) == OVERLAY, err
    assert _files(project.parent) == before, "a refused edit must change nothing"
    return err


@pytest.mark.parametrize("command", ["promote", "pin"])
def test_overlay_linked_inside_the_project_is_not_edited(project, capsys, command,
                                                         update_golden):
    real = project / "shared" / "prod.yaml"
    real.parent.mkdir()
    (project / OVERLAY).replace(real)
    (project / OVERLAY).symlink_to("../shared/prod.yaml")
    err = _refused(project, capsys, overlay_edit.EDIT_LINKED, command=command)
    assert "symbolic link" in err and "shared" not in err  # where it points is not said
    _snapshot(f"{command}-overlay-is-a-link", err, project, update_golden)


def test_overlay_linked_out_of_the_project_is_not_read(project, capsys):
    secret = project.parent / "environ"
    secret.write_text(f"CI_TOKEN={SECRET}: [\n")
    (project / OVERLAY).unlink()
    (project / OVERLAY).symlink_to(secret)
    err = _refused(project, capsys, overlay_edit.EDIT_LINKED)
    assert SECRET not in err and str(secret) not in err


@pytest.mark.parametrize("command", ["promote", "pin"])
def test_fifo_overlay_is_refused_without_hanging(project, capsys, command, update_golden):
    (project / OVERLAY).unlink()
    os.mkfifo(project / OVERLAY)
    err = _refused(project, capsys, "MLC018", command=command)
    assert "FIFO" in err
    _snapshot(f"{command}-overlay-is-a-fifo", err, project, update_golden)


def test_other_overlays_are_neither_read_nor_followed(project, capsys):
    """The scratch compile copies only ml.yaml and the edited overlay: a FIFO or a link to a
    device among the other environments' files neither hangs the promotion nor is read."""
    os.mkfifo(project / "environments" / "qa.yaml")
    (project / "environments" / "dev.yaml").unlink()
    (project / "environments" / "dev.yaml").symlink_to("/dev/zero")
    status, out, err = _run(["promote", "-C", str(project), "staging", "prod"], capsys)
    assert status == 0, err
    assert "Promoted staging -> prod" in out
    assert (project / OVERLAY).read_text().startswith(PROD)


def test_planted_temporary_file_is_not_written_through(project, capsys):
    """The replacement is a fresh file: a link planted where a fixed temporary name would be
    is left alone, and so is its target."""
    target = project.parent / "victim.txt"
    target.write_text("untouched\n")
    planted = project / "environments" / ".prod.yaml.mlc-tmp"
    planted.symlink_to(target)
    mode = 0o640
    (project / OVERLAY).chmod(mode)
    status, _, err = _run(["promote", "-C", str(project), "staging", "prod"], capsys)
    assert status == 0, err
    assert target.read_text() == "untouched\n" and planted.is_symlink()
    overlay = project / OVERLAY
    assert not overlay.is_symlink() and overlay.stat().st_mode & 0o777 == mode
    assert "alias: challenger" in overlay.read_text()
    leftovers = [p.name for p in overlay.parent.iterdir() if p.name.endswith(".mlc-tmp")]
    assert leftovers == [".prod.yaml.mlc-tmp"]


# Each system call of the replacement, failing as a full disk or a read-only folder would.
FAULTS = ["mkstemp", "write", "fchmod", "fsync", "replace"]


@pytest.mark.parametrize("fault", FAULTS)
def test_failed_write_leaves_the_overlay_as_it_was(project, capsys, monkeypatch, fault,
                                                   update_golden):
    def fail(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if fault == "mkstemp":
        monkeypatch.setattr(overlay_edit.tempfile, "mkstemp", fail)
    elif fault == "write":
        real_fdopen = os.fdopen

        class Full:
            def __init__(self, fd, mode):
                self.file = real_fdopen(fd, mode)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.file.close()

            def write(self, data):
                fail()

        monkeypatch.setattr(overlay_edit.os, "fdopen", Full)
    else:
        monkeypatch.setattr(overlay_edit.os, fault, fail)
    before = _files(project)
    status, _, err = _run(["promote", "-C", str(project), "staging", "prod"], capsys)
    monkeypatch.undo()
    assert status == 1, err
    assert _location(err, overlay_edit.EDIT_FAILED) == OVERLAY
    assert "No space left on device" in err
    assert _files(project) == before, "the overlay and its folder are as they were"
    if fault == "replace":
        _snapshot("promote-overlay-write-fails", err, project, update_golden)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_read_only_environments_folder(project, capsys):
    folder = project / "environments"
    folder.chmod(0o555)
    try:
        status, _, err = _run(["promote", "-C", str(project), "staging", "prod"], capsys)
    finally:
        folder.chmod(0o755)
    assert status == 1 and _location(err, overlay_edit.EDIT_FAILED) == OVERLAY
    assert (folder / "prod.yaml").read_text() == PROD
