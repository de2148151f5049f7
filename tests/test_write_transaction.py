"""Every environment or none: compile and apply write all environments as one transaction.

A refusal in one environment leaves the others untouched, an OS error at any single disk
call leaves every old tree (or, past the commit point, every new one), and `--out` may not
point anywhere that would make mlc write over the project or through a link.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mlc.cli import main
from mlc.compiler import swap, write
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.write import INDEX_NAME, write_environments

from .bad_inputs import BASE, edit
from .conftest import write_project

ENVS = ("dev", "prod", "staging")
OLD = {env: {"a.yaml": b"old a\n", "k8s/b.yaml": f"old {env}\n".encode(), "gone.txt": b"x\n"}
       for env in ENVS}
NEW = {env: {"a.yaml": b"new a\n", "k8s/b.yaml": f"new {env}\n".encode(), "k8s/c/d.yaml":
             b"added\n"} for env in ENVS}


def generated(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != INDEX_NAME}


def state(out: Path) -> dict[str, str]:
    """Each environment's tree as "old", "new" or "MIXED"."""
    kinds = {}
    for env in ENVS:
        tree = generated(out / env) if (out / env).is_dir() else None
        kinds[env] = "old" if tree == OLD[env] else "new" if tree == NEW[env] else "MIXED"
    return kinds


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".mlc-")
                  and p.name != ".mlc.lock")


# ---------------------------------------------------------------------------------------
# An injected OSError at each disk call of the writer


class _Faulty:
    """Stands in for the `os` module inside write.py and swap.py: the n-th call of a function
    that changes the disk raises ENOSPC, every other call goes through."""

    NAMES = ("open", "mkdir", "rename", "replace", "link", "symlink", "unlink", "rmdir",
             "fsync", "fchmod", "chmod", "fdopen")

    def __init__(self, fail_at: int):
        self.fail_at, self.calls = fail_at, []

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.NAMES:
            return real

        def call(*args, **kwargs):
            self.calls.append(name)
            if len(self.calls) == self.fail_at:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return real(*args, **kwargs)
        return call


@pytest.mark.slow
@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_an_os_error_at_any_write_call_changes_no_environment(tmp_path, monkeypatch, exchange):
    if exchange and swap._exchange is None:
        pytest.skip("no renameat2 on this platform")
    if not exchange:
        monkeypatch.setattr(swap, "_exchange", None)
    out = tmp_path / "out"
    assert write_environments(out, OLD, diags=Diagnostics())

    counting = _Faulty(0)
    monkeypatch.setattr(write, "os", counting)
    monkeypatch.setattr(swap, "os", counting)
    assert write_environments(tmp_path / "count", NEW, diags=Diagnostics())
    total = len(counting.calls)
    assert total > 30

    failures = 0
    for n in range(1, total + 1):
        monkeypatch.setattr(write, "os", os)
        monkeypatch.setattr(swap, "os", os)
        assert write_environments(out, OLD, diags=Diagnostics()) is not None  # reset
        assert state(out) == dict.fromkeys(ENVS, "old") and leftovers(out) == []
        faulty = _Faulty(n)
        monkeypatch.setattr(write, "os", faulty)
        monkeypatch.setattr(swap, "os", faulty)
        diags = Diagnostics()
        result = write_environments(out, NEW, diags=diags)
        kinds = state(out)
        if result is None:
            failures += 1
            assert [d.code for d in diags.errors] == ["MLC904"], (n, faulty.calls[-1])
            assert "injected" in diags.errors[0].message
            assert kinds == dict.fromkeys(ENVS, "old"), (n, faulty.calls[-1], kinds)
        else:
            # past the commit point, a failure only delays the clean-up of the old trees
            assert kinds == dict.fromkeys(ENVS, "new"), (n, faulty.calls[-1], kinds)
        monkeypatch.setattr(write, "os", os)
        monkeypatch.setattr(swap, "os", os)
        with write.output_lock(out):  # the next run's recovery: nothing is left behind
            pass
        assert state(out) == kinds and leftovers(out) == [], n
    assert failures > total // 2


def test_a_refused_environment_leaves_the_others_unwritten(tmp_path):
    out = tmp_path / "out"
    assert write_environments(out, OLD, diags=Diagnostics())
    (out / "staging" / "a.yaml").write_bytes(b"edited by hand\n")
    diags = Diagnostics()
    assert write_environments(out, NEW, diags=diags) is None
    assert [d.code for d in diags.errors] == ["MLC902"]
    assert generated(out / "dev") == OLD["dev"] and generated(out / "prod") == OLD["prod"]


def test_a_full_disk_on_a_later_environment_replaces_no_earlier_one(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert write_environments(out, OLD, diags=Diagnostics())
    real_build = write._build

    def full_on_staging(staging, *args):
        if staging.name.endswith("-staging"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_build(staging, *args)

    monkeypatch.setattr(write, "_build", full_on_staging)
    diags = Diagnostics()
    assert write_environments(out, NEW, diags=diags) is None
    assert [d.code for d in diags.errors] == ["MLC904"]
    assert state(out) == dict.fromkeys(ENVS, "old") and leftovers(out) == []


def test_a_failed_swap_rolls_back_the_environments_already_swapped(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert write_environments(out, OLD, diags=Diagnostics())
    real_swap = swap._swap_in

    def fail_on_staging(out_dir, env):
        if env == "staging":
            raise OSError(errno.EIO, "Input/output error")
        return real_swap(out_dir, env)

    monkeypatch.setattr(swap, "_swap_in", fail_on_staging)
    assert write_environments(out, NEW, diags=Diagnostics()) is None
    assert state(out) == dict.fromkeys(ENVS, "old")
    monkeypatch.setattr(swap, "_swap_in", real_swap)
    assert write_environments(out, NEW, diags=Diagnostics())
    assert state(out) == dict.fromkeys(ENVS, "new") and leftovers(out) == []


def test_a_journal_left_by_a_killed_run_is_finished_forward(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert write_environments(out, OLD, diags=Diagnostics())
    real_swap, done = swap._swap_in, []

    def killed_after_first(out_dir, env):
        if done:
            raise SystemExit("killed")  # nothing runs after this in a killed process...
        done.append(real_swap(out_dir, env))
        return done[-1]

    monkeypatch.setattr(swap, "_swap_in", killed_after_first)
    monkeypatch.setattr(swap, "_swap_back", lambda *a: None)  # ...not even the rollback
    monkeypatch.setattr(swap, "_remove_journal", lambda *a: None)
    with pytest.raises(SystemExit):
        write_environments(out, NEW, diags=Diagnostics())
    assert state(out) == {"dev": "new", "prod": "old", "staging": "old"}
    assert (out / swap.JOURNAL_NAME).exists()
    monkeypatch.undo()
    with write.output_lock(out):
        assert state(out) == dict.fromkeys(ENVS, "new")
    assert leftovers(out) == []


# ---------------------------------------------------------------------------------------
# The CLI: compile is one transaction too, and --out is checked


def _project(tmp_path: Path) -> Path:
    # development ones: the one-machine settings of BASE are what these tests write
    overlays = {f"environments/{env}.yaml": "platform: {development: true}\n" for env in ENVS}
    return write_project(tmp_path / "project", {"ml.yaml": BASE, **overlays})


def test_compile_refusing_one_environment_writes_none(tmp_path, capsys):
    project = _project(tmp_path)
    out = tmp_path / "out"
    assert main(["compile", "-C", str(project), "--out", str(out)]) == 0
    before = {env: generated(out / env) for env in ENVS}
    edited = next(p for p in sorted((out / "staging").rglob("*.yaml")))
    edited.write_text(edited.read_text() + "# hand edit\n")
    (project / "ml.yaml").write_text(edit("    cpu: 500m\n", "    cpu: 750m\n"))
    capsys.readouterr()
    assert main(["compile", "-C", str(project), "--out", str(out)]) == 1
    assert "error[MLC902]" in capsys.readouterr().err
    assert generated(out / "dev") == before["dev"] and generated(out / "prod") == before["prod"]


@pytest.mark.parametrize("where", ["project", "parent"])
def test_out_holding_the_project_is_refused(tmp_path, capsys, where):
    project = _project(tmp_path)
    out = project if where == "project" else tmp_path
    listing = sorted(p.name for p in tmp_path.rglob("*"))
    for command in ("compile", "apply", "plan"):
        assert main([command, "-C", str(project), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert "error[MLC905]" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == listing


def test_out_that_is_a_link_is_refused(tmp_path, capsys):
    project = _project(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "real")
    assert main(["compile", "-C", str(project), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "error[MLC906]" in err and f"--> {tmp_path / 'out'}" in err
    assert list((tmp_path / "real").iterdir()) == []


def test_unwritable_out_is_a_located_error(tmp_path, capsys):
    project = _project(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    assert main(["compile", "-C", str(project), "--out", str(blocker / "out")]) == 1
    err = capsys.readouterr().err
    assert "error[MLC907]" in err and f"--> {blocker / 'out'}" in err
    assert "Traceback" not in err and blocker.read_text() == "not a folder\n"
    # /proc takes no new folders, even from root: refused when the write is tried
    assert main(["compile", "-C", str(project), "--out", "/proc/mlc-out"]) == 1
    err = capsys.readouterr().err
    assert ("error[MLC907]" in err or "error[MLC904]" in err) and "Traceback" not in err
    assert "--> /proc/mlc-out" in err
    if os.geteuid() != 0:  # root writes through file modes
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["apply", "-C", str(project), "--out", str(locked)]) == 1
        assert "error[MLC907]" in capsys.readouterr().err


def test_plan_reads_a_folder_it_may_not_write(tmp_path, capsys):
    project = _project(tmp_path)
    # plan never writes: a missing output folder is planned against, not created
    assert main(["plan", "-C", str(project), "--out", str(tmp_path / "nowhere")]) == 0
    assert not (tmp_path / "nowhere").exists()


def test_a_damaged_journal_is_a_located_error(tmp_path, capsys):
    project = _project(tmp_path)
    out = tmp_path / "out"
    assert main(["compile", "-C", str(project), "--out", str(out)]) == 0
    (out / swap.JOURNAL_NAME).write_text("[" * 100_000)
    before = {env: generated(out / env) for env in ENVS}
    capsys.readouterr()
    for command in ("compile", "apply"):
        assert main([command, "-C", str(project), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert "error[MLC903]" in err and f"--> {out / swap.JOURNAL_NAME}" in err, err
        assert "Traceback" not in err and "internal error" not in err
    assert {env: generated(out / env) for env in ENVS} == before
