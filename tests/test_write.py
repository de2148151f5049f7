"""Writing an environment's tree: atomic, owned files only, refusals leave the disk alone."""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest

from mlc import __version__
from mlc.compiler import swap, write
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.write import INDEX_NAME, LOCK_NAME, WriteResult, write_environment

FILES = {
    "argo/train.yaml": b"kind: Workflow\n",
    "k8s/serve.yaml": b"kind: Deployment\n",
    "README.md": b"# prod\n",
}


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under root: file bytes, link targets, empty folders."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            if full.is_symlink():
                out[prefix + name] = ("link", os.readlink(full))
            elif full.is_file():
                out[prefix + name] = full.read_bytes()
        if not dirnames and not filenames and prefix:
            out[rel] = "empty dir"
    return out


def generated(root: Path) -> dict[str, object]:
    return {k: v for k, v in snapshot(root).items() if k != INDEX_NAME}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".mlc-"))


def write_ok(out: Path, files: dict[str, bytes], env: str = "prod", **kw) -> WriteResult:
    diags = Diagnostics()
    result = write_environment(out, env, files, diags=diags, **kw)
    assert result is not None, [d.message for d in diags]
    assert not diags.errors
    return result


def test_first_write_creates_tree_and_index(tmp_path: Path) -> None:
    result = write_ok(tmp_path, FILES)
    assert result == WriteResult("prod", tuple(sorted(FILES)), (), ())
    env = tmp_path / "prod"
    assert generated(env) == FILES
    index = json.loads((env / INDEX_NAME).read_text())
    assert index == {
        "format": 1, "generator": "mlc", "version": __version__,
        "files": {p: hashlib.sha256(b).hexdigest() for p, b in sorted(FILES.items())},
    }
    assert (env / INDEX_NAME).read_text() == json.dumps(index, sort_keys=True, indent=2) + "\n"
    assert (tmp_path / LOCK_NAME).exists()
    assert leftovers(tmp_path) == []


def test_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_ok(tmp_path, FILES)
    finally:
        os.umask(old)
    env = tmp_path / "prod"
    assert stat.S_IMODE((env / "argo/train.yaml").stat().st_mode) == 0o644
    assert stat.S_IMODE((env / "argo").stat().st_mode) == 0o755
    assert stat.S_IMODE(env.stat().st_mode) == 0o755


def test_identical_second_write_touches_nothing(tmp_path: Path) -> None:
    write_ok(tmp_path, FILES)
    env = tmp_path / "prod"
    before = {p: (env / p).stat().st_mtime_ns for p in FILES}
    inode = env.stat().st_ino
    result = write_ok(tmp_path, dict(reversed(list(FILES.items()))))
    assert result == WriteResult("prod", (), (), tuple(sorted(FILES)))
    assert env.stat().st_ino == inode
    assert {p: (env / p).stat().st_mtime_ns for p in FILES} == before


def test_changes_and_prunes(tmp_path: Path) -> None:
    write_ok(tmp_path, FILES)
    new = {"k8s/serve.yaml": b"kind: Deployment\nspec: {}\n", "README.md": FILES["README.md"]}
    result = write_ok(tmp_path, new)
    assert result == WriteResult("prod", ("k8s/serve.yaml",), ("argo/train.yaml",),
                                 ("README.md",))
    assert generated(tmp_path / "prod") == new  # the emptied argo/ folder went with its file
    assert leftovers(tmp_path) == []


def test_files_mlc_did_not_generate_are_carried_over(tmp_path: Path) -> None:
    write_ok(tmp_path, FILES)
    env = tmp_path / "prod"
    (env / "NOTES.txt").write_bytes(b"mine\n")
    (env / "argo/custom.yaml").write_bytes(b"kind: Mine\n")
    (env / "keep").mkdir()
    (env / "link").symlink_to("argo/custom.yaml")
    (env / "argo/custom.yaml").chmod(0o600)
    mine = {k: v for k, v in snapshot(env).items() if k not in FILES and k != INDEX_NAME}

    result = write_ok(tmp_path, {"k8s/serve.yaml": b"changed\n"})
    assert result.removed == ("README.md", "argo/train.yaml")
    after = snapshot(env)
    assert {k: after[k] for k in mine} == mine
    assert set(after) == set(mine) | {"k8s/serve.yaml", INDEX_NAME}
    assert stat.S_IMODE((env / "argo/custom.yaml").stat().st_mode) == 0o600
    assert "NOTES.txt" not in json.loads((env / INDEX_NAME).read_text())["files"]


@pytest.mark.parametrize("make_user_entry", [
    lambda env: (env / "k8s").mkdir() or (env / "k8s/new.yaml").write_bytes(b"mine\n"),
    lambda env: (env / "k8s").write_bytes(b"a file where mlc wants a folder\n"),
    lambda env: (env / "k8s").symlink_to("/tmp"),
    lambda env: (env / "k8s").mkdir() or (env / "k8s/new.yaml").mkdir()
    or (env / "k8s/new.yaml/x").write_bytes(b"mine\n"),
], ids=["same path", "file on folder", "symlinked folder", "folder on file"])
def test_collision_with_a_user_file_writes_nothing(tmp_path: Path, make_user_entry) -> None:
    write_ok(tmp_path, {"README.md": b"x\n"})
    env = tmp_path / "prod"
    make_user_entry(env)
    before = snapshot(tmp_path)
    diags = Diagnostics()
    result = write_environment(tmp_path, "prod", {"README.md": b"y\n", "k8s/new.yaml": b"z\n"},
                               diags=diags)
    assert result is None
    assert [d.code for d in diags.errors] == ["MLC901"]
    assert "not generated by mlc; move it away or delete it" in diags.errors[0].message
    assert snapshot(tmp_path) == before


def test_existing_folder_without_index_is_not_ours(tmp_path: Path) -> None:
    env = tmp_path / "prod"
    (env / "argo").mkdir(parents=True)
    (env / "argo/train.yaml").write_bytes(b"hand written\n")
    (env / "other.yaml").write_bytes(b"hand written\n")
    diags = Diagnostics()
    assert write_environment(tmp_path, "prod", FILES, diags=diags) is None
    assert [str(d.span) for d in diags.errors] == [str(env / "argo/train.yaml")]
    (env / "argo/train.yaml").unlink()
    write_ok(tmp_path, FILES)
    assert (env / "other.yaml").read_bytes() == b"hand written\n"


@pytest.mark.parametrize("make", [lambda p: p.write_bytes(b"x"), lambda p: p.symlink_to("/tmp")],
                         ids=["file", "link"])
def test_environment_path_that_is_not_a_folder(tmp_path: Path, make) -> None:
    make(tmp_path / "prod")
    diags = Diagnostics()
    assert write_environment(tmp_path, "prod", FILES, diags=diags) is None
    assert [d.code for d in diags.errors] == ["MLC903"]


def test_hand_edit_is_refused_unless_forced(tmp_path: Path) -> None:
    write_ok(tmp_path, FILES)
    env = tmp_path / "prod"
    (env / "argo/train.yaml").write_bytes(b"kind: Workflow\n# tweak\n")
    new = {**FILES, "k8s/serve.yaml": b"kind: Deployment\nspec: {}\n"}
    before = snapshot(tmp_path)
    diags = Diagnostics()
    assert write_environment(tmp_path, "prod", new, diags=diags) is None
    assert [(d.code, d.message) for d in diags.errors] == [
        ("MLC902", "prod/argo/train.yaml was edited by hand since mlc generated it")]
    assert snapshot(tmp_path) == before

    diags = Diagnostics()
    result = write_environment(tmp_path, "prod", new, force=True, diags=diags)
    assert result is not None and not diags.errors
    assert [d.code for d in diags.warnings] == ["MLC902"]
    assert result.written == ("argo/train.yaml", "k8s/serve.yaml")
    assert generated(env) == new


def test_hand_edit_of_a_file_that_would_be_pruned(tmp_path: Path) -> None:
    write_ok(tmp_path, FILES)
    (tmp_path / "prod/README.md").write_bytes(b"edited\n")
    diags = Diagnostics()
    assert write_environment(tmp_path, "prod", {"a.yaml": b"a\n"}, diags=diags) is None
    assert [d.code for d in diags.errors] == ["MLC902"]


def test_hand_edit_that_matches_the_new_output_is_fine(tmp_path: Path) -> None:
    write_ok(tmp_path, FILES)
    (tmp_path / "prod/README.md").write_bytes(b"# production\n")
    result = write_ok(tmp_path, {**FILES, "README.md": b"# production\n"})
    assert result.written == ()


def test_deleted_generated_file_is_regenerated(tmp_path: Path) -> None:
    write_ok(tmp_path, FILES)
    (tmp_path / "prod/README.md").unlink()
    assert write_ok(tmp_path, FILES).written == ("README.md",)
    assert generated(tmp_path / "prod") == FILES


@pytest.mark.parametrize("index", [
    b"{not json", b"[]", b'{"files": {"../../etc/passwd": "' + b"0" * 64 + b'"}}',
    b'{"files": {"a.yaml": "nothex"}}',
])
def test_unreadable_index(tmp_path: Path, index: bytes) -> None:
    write_ok(tmp_path, FILES)
    (tmp_path / "prod" / INDEX_NAME).write_bytes(index)
    before = snapshot(tmp_path)
    diags = Diagnostics()
    assert write_environment(tmp_path, "prod", FILES, diags=diags) is None
    assert [d.code for d in diags.errors] == ["MLC903"]
    assert snapshot(tmp_path) == before


def test_special_files_are_refused(tmp_path: Path) -> None:
    write_ok(tmp_path, FILES)
    os.mkfifo(tmp_path / "prod/pipe")
    diags = Diagnostics()
    assert write_environment(tmp_path, "prod", FILES, diags=diags) is None
    assert [d.code for d in diags.errors] == ["MLC903"]


@pytest.mark.parametrize(("env", "files"), [
    ("../x", {}), (".hidden", {}), ("a/b", {}), ("", {}),
    ("prod", {"../x.yaml": b""}), ("prod", {"/abs": b""}), ("prod", {INDEX_NAME: b""}),
])
def test_bad_arguments_are_programming_errors(tmp_path: Path, env: str, files) -> None:
    with pytest.raises(ValueError):
        write_environment(tmp_path, env, files, diags=Diagnostics())
    assert not (tmp_path / "x.yaml").exists() and not (tmp_path.parent / "x").exists()


# ---------------------------------------------------------------------------------------
# Crashes


NEW = {"argo/train.yaml": b"kind: Workflow\nv: 2\n", "new.yaml": b"new\n"}


def _old_tree(tmp_path: Path) -> dict[str, object]:
    write_ok(tmp_path, FILES)
    (tmp_path / "prod/mine.txt").write_bytes(b"mine\n")
    return snapshot(tmp_path / "prod")


def _expect_new_tree(tmp_path: Path) -> None:
    tree = generated(tmp_path / "prod")
    assert tree == {**NEW, "mine.txt": b"mine\n"}
    assert leftovers(tmp_path) == []


def test_failed_rename_puts_the_old_tree_back(tmp_path: Path, monkeypatch) -> None:
    old = _old_tree(tmp_path)
    monkeypatch.setattr(swap, "_exchange", None)  # the two-rename path
    real_rename, calls = os.rename, []

    def flaky_rename(src, dst):
        if ".mlc-transaction" in str(src):
            return real_rename(src, dst)
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("simulated crash")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", flaky_rename)
    diags = Diagnostics()
    assert write_environment(tmp_path, "prod", NEW, diags=diags) is None
    assert [d.code for d in diags.errors] == ["MLC904"]
    assert "simulated crash" in diags.errors[0].message
    assert snapshot(tmp_path / "prod") == old
    monkeypatch.setattr(os, "rename", real_rename)
    write_ok(tmp_path, NEW)
    _expect_new_tree(tmp_path)


@pytest.mark.parametrize("death", [KeyboardInterrupt, OSError])
def test_hard_crash_between_renames_is_recovered(tmp_path: Path, monkeypatch, death) -> None:
    old = _old_tree(tmp_path)
    monkeypatch.setattr(swap, "_exchange", None)
    real_rename, calls = os.rename, []

    def dying_rename(src, dst):
        # The first rename (old tree aside) happens; then the process "dies": neither the
        # staged tree nor the rollback is renamed. (The journal's own rename goes through.)
        if ".mlc-transaction" in str(src):
            return real_rename(src, dst)
        calls.append((src, dst))
        if len(calls) > 1:
            raise death("simulated crash")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", dying_rename)
    if death is OSError:
        diags = Diagnostics()
        assert write_environment(tmp_path, "prod", NEW, diags=diags) is None
        assert [d.code for d in diags.errors] == ["MLC904"]
        assert "next mlc run puts it back" in diags.errors[0].notes[0]
    else:
        with pytest.raises(KeyboardInterrupt):
            write_environment(tmp_path, "prod", NEW, diags=Diagnostics())
    assert not (tmp_path / "prod").exists()
    assert snapshot(tmp_path / ".mlc-old-prod") == old  # intact, waiting to be restored
    monkeypatch.setattr(os, "rename", real_rename)

    result = write_ok(tmp_path, NEW)
    assert result.removed == ("README.md", "k8s/serve.yaml")
    _expect_new_tree(tmp_path)


def test_crash_after_exchange_is_cleaned_up(tmp_path: Path, monkeypatch) -> None:
    if swap._exchange is None:
        pytest.skip("no renameat2 on this platform")
    _old_tree(tmp_path)
    real_rmtree = shutil.rmtree

    def dying_rmtree(path, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", dying_rmtree)
    with pytest.raises(KeyboardInterrupt):
        write_environment(tmp_path, "prod", NEW, diags=Diagnostics())
    assert generated(tmp_path / "prod") == {**NEW, "mine.txt": b"mine\n"}
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert write_ok(tmp_path, NEW).written == ()
    _expect_new_tree(tmp_path)


def test_crash_while_staging_leaves_the_old_tree(tmp_path: Path, monkeypatch) -> None:
    old = _old_tree(tmp_path)
    real_write = write._write_file

    def dying_write(path, data):
        if path.name == "new.yaml":
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(write, "_write_file", dying_write)
    with pytest.raises(KeyboardInterrupt):
        write_environment(tmp_path, "prod", NEW, diags=Diagnostics())
    assert snapshot(tmp_path / "prod") == old
    assert leftovers(tmp_path) == []


def test_os_error_while_staging_is_reported(tmp_path: Path, monkeypatch) -> None:
    old = _old_tree(tmp_path)
    real_write = write._write_file

    def full_disk(path, data):
        if path.name == "new.yaml":
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(write, "_write_file", full_disk)
    diags = Diagnostics()
    assert write_environment(tmp_path, "prod", NEW, diags=diags) is None
    assert [d.code for d in diags.errors] == ["MLC904"]
    assert "No space left" in diags.errors[0].message
    assert snapshot(tmp_path / "prod") == old
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("state", ["aside only", "aside and target", "staging and target"])
def test_leftovers_of_a_killed_run_are_recovered(tmp_path: Path, state: str) -> None:
    old = _old_tree(tmp_path)
    env = tmp_path / "prod"
    if state == "aside only":
        env.rename(tmp_path / ".mlc-old-prod")
    else:
        shutil.copytree(env, tmp_path / (".mlc-old-prod" if "aside" in state
                                         else ".mlc-staging-prod"), symlinks=True)
        (tmp_path / ".mlc-staging-prod" / "half.yaml").parent.mkdir(exist_ok=True)
        (tmp_path / ".mlc-staging-prod" / "half.yaml").write_bytes(b"half")
    write_ok(tmp_path, {**FILES, "extra.yaml": b"x\n"})
    assert generated(env) == {**{k: v for k, v in old.items() if k != INDEX_NAME},
                              "extra.yaml": b"x\n"}
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------
# Concurrency


def _writer(out: str, tag: str, rounds: int, barrier, errors) -> None:
    files = {f"{tag}/{i}.yaml": f"{tag}{i}\n".encode() for i in range(30)}
    files["shared.yaml"] = tag.encode()
    barrier.wait()
    for _ in range(rounds):
        diags = Diagnostics()
        if write_environment(Path(out), "prod", files, diags=diags) is None:
            errors.put([d.message for d in diags])


def test_concurrent_writers_never_mix(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tag, 8, barrier, errors))
             for tag in "abc"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert errors.empty()
    tree = generated(tmp_path / "prod")
    tag = tree["shared.yaml"].decode()
    assert tree == {"shared.yaml": tag.encode(),
                    **{f"{tag}/{i}.yaml": f"{tag}{i}\n".encode() for i in range(30)}}
    index = json.loads((tmp_path / "prod" / INDEX_NAME).read_text())
    assert set(index["files"]) == set(tree)
    assert leftovers(tmp_path) == []


def _write_once(out: str, go) -> None:
    go.wait()
    write_environment(Path(out), "prod", FILES, diags=Diagnostics())


def test_writer_waits_for_the_lock(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    proc = ctx.Process(target=_write_once, args=(str(tmp_path), go))
    proc.start()
    # Opened after the fork, so the child does not share (and keep) this lock.
    with open(tmp_path / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        go.set()
        time.sleep(0.5)
        assert proc.is_alive()
        assert not (tmp_path / "prod").exists()
    proc.join(30)
    assert proc.exitcode == 0
    assert generated(tmp_path / "prod") == FILES


def test_output_lock_nests_for_its_holder_and_blocks_other_threads(tmp_path: Path) -> None:
    done = threading.Event()

    def other_writer() -> None:
        write_environment(tmp_path, "dev", FILES, diags=Diagnostics())
        done.set()

    with write.output_lock(tmp_path):
        write_ok(tmp_path, FILES)  # same thread: the held lock is reused, not waited on
        thread = threading.Thread(target=other_writer)
        thread.start()
        assert not done.wait(0.5)
        assert not (tmp_path / "dev").exists()
    thread.join(30)
    assert done.is_set()
    assert generated(tmp_path / "dev") == FILES


def test_check_write_reports_without_writing(tmp_path: Path) -> None:
    write_ok(tmp_path, FILES)
    (tmp_path / "prod/README.md").write_bytes(b"edited\n")
    before = snapshot(tmp_path)
    diags = Diagnostics()
    assert write.check_write(tmp_path, "prod", {**FILES, "x.yaml": b"x\n"}, diags=diags) is False
    assert [d.code for d in diags.errors] == ["MLC902"]
    assert write.check_write(tmp_path, "prod", FILES, force=True, diags=Diagnostics()) is True
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------
# Durability: the staged tree is on disk before the swap, at one sync for the whole tree


def _counting_fsync(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


MANY = {f"part-{i // 10}/file-{i}.yaml": f"n: {i}\n".encode() for i in range(40)}


def test_the_staged_tree_is_synced_once_not_per_file(tmp_path: Path, monkeypatch) -> None:
    if write._syncfs is None:
        pytest.skip("no syncfs on this platform: every file is fsynced (tested below)")
    synced: list[int] = []
    real_syncfs = write._syncfs
    monkeypatch.setattr(write, "_syncfs", lambda fd: synced.append(fd) or real_syncfs(fd))
    fsyncs = _counting_fsync(monkeypatch)
    write_ok(tmp_path, MANY)
    assert len(synced) == 1
    # the journal and the folder that the swap renames in; not one per file
    assert len(fsyncs) < len(MANY) // 4
    assert generated(tmp_path / "prod") == MANY


def test_without_syncfs_every_staged_file_is_fsynced(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(write, "_syncfs", None)
    fsyncs = _counting_fsync(monkeypatch)
    write_ok(tmp_path, MANY)
    # every file, the index, and the staged folders (4 parts and the root)
    assert len(fsyncs) >= len(MANY) + 1 + 5
    assert generated(tmp_path / "prod") == MANY


def test_a_failed_sync_of_the_staged_tree_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    if write._syncfs is None:
        pytest.skip("no syncfs on this platform")
    write_ok(tmp_path, {"a.yaml": b"old\n"})
    before = snapshot(tmp_path / "prod")

    def failing(fd):
        ctypes.set_errno(5)  # EIO: a writeback error reported by syncfs
        return -1

    monkeypatch.setattr(write, "_syncfs", failing)
    diags = Diagnostics()
    assert write_environment(tmp_path, "prod", MANY, diags=diags) is None
    assert [d.code for d in diags.errors] == ["MLC904"]
    assert snapshot(tmp_path / "prod") == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("make", ["link", "fifo"])
def test_a_lock_that_is_a_link_or_a_fifo_is_refused(tmp_path: Path, make: str) -> None:
    """A `.mlc.lock` committed as a link must not make mlc create or lock a file wherever it
    points; a FIFO must not block the lock."""
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere"
    if make == "link":
        target.write_text("theirs")
        (out / LOCK_NAME).symlink_to(target)
    else:
        os.mkfifo(out / LOCK_NAME)
    diags = Diagnostics()
    assert write_environment(out, "prod", {"a.yaml": b"a: 1\n"}, diags=diags) is None
    assert [d.code for d in diags.errors] == ["MLC904"]
    assert not (out / "prod").exists()
    if make == "link":
        assert target.read_text() == "theirs"
