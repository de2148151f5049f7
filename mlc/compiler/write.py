"""The only module that touches the output directory (DESIGN rule 4).

`write_environments` replaces `out_dir/<env>` of every environment given with its new tree
as one transaction, so that `git add` after a successful run, or any mlc run after a crash,
finds every old tree or every new one, never prod new and staging old:

1. under an exclusive lock on `out_dir/.mlc.lock`, so two writers never interleave (compile,
   plan and apply all take it);
2. finish or undo what a crashed earlier run left behind (swap.finish_interrupted, `_recover`);
3. read each `<env>/.mlc-index.json`, the record of which files mlc generated and their
   hashes; refuse (and write nothing, in no environment) if a new file would land on a file
   mlc did not generate (MLC901) or a generated file was edited by hand (MLC902, unless
   `force`); an OS error on the way is MLC904 and also leaves every old tree in place;
4. build each complete new tree in `out_dir/.mlc-staging-<env>` (same filesystem, so renames
   are atomic): files mlc did not generate are carried over, generated files written, the
   new index last, and then the staged tree made durable at once (`_make_durable`);
5. swap them all in, journaled, rolled back on error (swap.py).

`mlc apply` passes an audit record per environment: it is appended to the environment's
history file inside the staged tree (audit/history.py), so tree and record swap together.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlc import __version__
from mlc.compiler.audit.history import HISTORY_NAME, appended
from mlc.compiler.diagnostics import Diagnostics, Span
from mlc.compiler.output import check_path
from mlc.compiler.swap import (
    JOURNAL_NAME,
    DamagedJournal,
    aside_of,
    commit,
    finish_interrupted,
    fsync_dir,
    staging_of,
)
from mlc.compiler.swap import remove as _remove

INDEX_NAME = ".mlc-index.json"
LOCK_NAME = ".mlc.lock"
INDEX_FORMAT = 1
FILE_MODE = 0o644
DIR_MODE = 0o755

# Environment names become folder names next to our hidden staging folders, so they may not
# start with a dot.
_ENV_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class WriteResult:
    env: str
    written: tuple[str, ...]  # new or changed files
    removed: tuple[str, ...]  # generated before, no longer generated, deleted
    unchanged: tuple[str, ...]


@dataclass
class _Tree:
    """What is on disk now: the index and every entry except the index itself."""

    index: dict[str, str]  # path -> sha256, as recorded by the last write
    index_bytes: bytes | None
    entries: dict[str, str]  # path -> "file" | "link" | "dir" (empty folders) | "other"


def write_environment(out_dir: Path, env: str, files: Mapping[str, bytes], *,
                      force: bool = False, diags: Diagnostics) -> WriteResult | None:
    """Replace `out_dir/env` with `files` (paths relative to it); None if refused."""
    results = write_environments(out_dir, {env: files}, force=force, diags=diags)
    return results[0] if results else None


def write_environments(out_dir: Path, trees: Mapping[str, Mapping[str, bytes]], *,
                       force: bool = False, diags: Diagnostics,
                       records: Mapping[str, Mapping] | None = None) -> list[WriteResult] | None:
    """Replace `out_dir/<env>` with its files for every environment, all or none; None if
    refused or failed. Refusals and failures are reported to `diags` and leave every
    environment's tree as it was. `records` (from apply): the audit record of each
    environment, appended to its history in the new tree when the tree changes."""
    for env, files in trees.items():
        _check_arguments(env, files)
    out_dir = Path(out_dir)
    try:
        return _write(out_dir, trees, force, diags, records or {})
    except OSError as exc:
        report_os_error(exc, out_dir, diags, envs=sorted(trees))
        return None


def report_os_error(exc: OSError, out_dir: Path, diags: Diagnostics, *,
                    envs: list[str] = ()) -> None:
    """An OS error while working on the output folder, as MLC904 (or MLC903 for a damaged
    journal), located at the file it names."""
    if isinstance(exc, DamagedJournal):
        journal = out_dir / JOURNAL_NAME
        diags.error("MLC903", f"{exc.strerror}: an interrupted write cannot be finished",
                    span=Span(str(journal)), help="restore the output folder from git, then "
                    f"delete {journal}")
        return
    # Everything before the swaps happens in staging copies and failed swaps are rolled
    # back, so the old trees are in place (or aside, put back by the next run).
    notes = [f"the old tree of `{env}` is in {aside_of(out_dir, env)}; the next mlc run "
             "puts it back" for env in envs
             if os.path.lexists(aside_of(out_dir, env)) and not os.path.lexists(out_dir / env)]
    where = Path(exc.filename) if isinstance(exc.filename, str) else out_dir
    diags.error("MLC904", f"could not write {out_dir}: {exc.strerror or exc}",
                span=Span(str(where)), notes=notes,
                help="free space or fix permissions, then run mlc again; no environment "
                "was changed")


def _check_arguments(env: str, files: Mapping[str, bytes]) -> None:
    if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
        raise ValueError(f"environment name {env!r} is not a plain folder name")
    for path, data in files.items():
        check_path(path)
        if path in (INDEX_NAME, HISTORY_NAME):
            raise ValueError(f"{path} is reserved for mlc's own index and history")
        if not isinstance(data, bytes):
            raise TypeError(f"{path}: content must be bytes, got {type(data).__name__}")


def _write(out_dir: Path, trees: Mapping[str, Mapping[str, bytes]], force: bool,
           diags: Diagnostics, records: Mapping[str, Mapping]) -> list[WriteResult] | None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir / LOCK_NAME):
        finish_interrupted(out_dir)
        examined = {env: _examine(out_dir, env, files, force, diags)
                    for env, files in sorted(trees.items())}
        if any(e is None for e in examined.values()):
            return None
        results, staged, new_index_sha = [], [], {}
        try:
            for env, files in trees.items():
                tree, new_hashes, disk_hashes = examined[env]
                written = tuple(p for p in new_hashes if disk_hashes.get(p) != new_hashes[p])
                removed = tuple(sorted(p for p in tree.index
                                       if p not in files and p in tree.entries))
                unchanged = tuple(p for p in new_hashes if p not in written)
                results.append(WriteResult(env, written, removed, unchanged))
                index_bytes = _index_bytes(new_hashes)
                if not written and not removed and index_bytes == tree.index_bytes:
                    continue  # nothing to do: leave the tree (and its mtimes) alone
                carried = {p: kind for p, kind in tree.entries.items() if p not in tree.index}
                staged.append(env)
                extra = _audit_files(out_dir / env, records.get(env), carried, index_bytes)
                _build(staging_of(out_dir, env), out_dir / env, carried, {**files, **extra},
                       index_bytes)
                new_index_sha[env] = _sha256(index_bytes)
            commit(out_dir, new_index_sha)
        except BaseException:
            # Not committed (or rolled back): the staged trees are incomplete or unused. A
            # journal that stayed (its rollback failed) still needs them to finish forward.
            if not os.path.lexists(out_dir / JOURNAL_NAME):
                for env in staged:
                    shutil.rmtree(staging_of(out_dir, env), ignore_errors=True)
            raise
    return results


def _audit_files(target: Path, record: Mapping | None, carried: dict[str, str],
                 index_bytes: bytes) -> dict[str, bytes]:
    """The history file with `record` appended, replacing the carried one; {} for compile."""
    if record is None:
        return {}
    carried.pop(HISTORY_NAME, None)
    return {HISTORY_NAME: appended(target, record, tree_sha256=_sha256(index_bytes))}


# ---------------------------------------------------------------------------------------
# Reading what is there


def _scan(target: Path, env: str, diags: Diagnostics) -> _Tree | None:
    if not os.path.lexists(target):
        return _Tree({}, None, {})
    if target.is_symlink() or not target.is_dir():
        diags.error("MLC903", f"{target} is not a folder (a file or a link)",
                    span=Span(str(target)), help="move it away or delete it",
                    notes=[f"mlc writes the environment `{env}` into this folder"])
        return None
    index_path = target / INDEX_NAME
    index: dict[str, str] = {}
    index_bytes = None
    if os.path.lexists(index_path):
        try:
            if not stat.S_ISREG(os.lstat(index_path).st_mode):
                raise ValueError("not a regular file")
            index_bytes = index_path.read_bytes()
            index = parse_index(index_bytes)
        except (OSError, ValueError) as exc:
            diags.error("MLC903", f"{index_path} cannot be read: {exc}",
                        span=Span(str(index_path)),
                        help="restore it from git, or delete it: mlc then treats every file "
                             "in the folder as not generated by mlc")
            return None
    try:
        entries = _entries(target)
    except OSError as exc:
        diags.error("MLC903", f"{target} cannot be read: {exc}", span=Span(str(target)),
                    help="fix the permissions of the folder the message names")
        return None
    return _Tree(index, index_bytes, entries)


def parse_index(data: bytes) -> dict[str, str]:
    """The {path: sha256} of an index file; ValueError if it is damaged."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError as exc:  # `[[[[...`: json nests by recursion
        raise ValueError("nested too deeply to be an mlc index") from exc
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        raise ValueError("no `files` mapping")  # noqa: TRY004 - bad data, not a bad call
    for path, digest in files.items():
        # A tampered index must not make mlc treat paths outside the tree as its own.
        check_path(path)
        if path == INDEX_NAME or not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ValueError(f"bad entry for {path!r}")
    return dict(files)


def _entries(target: Path) -> dict[str, str]:
    entries: dict[str, str] = {}

    def fail(exc: OSError) -> None:
        raise exc

    for dirpath, dirnames, filenames in os.walk(target, onerror=fail):
        rel_dir = os.path.relpath(dirpath, target).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)  # a link to a folder is carried as a link, not walked
                filenames.append(name)
        for name in filenames:
            rel = prefix + name
            if rel == INDEX_NAME:
                continue
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            kind = "file" if stat.S_ISREG(mode) else "link" if stat.S_ISLNK(mode) else "other"
            entries[rel] = kind
        if prefix and not dirnames and not filenames:
            entries[rel_dir] = "dir"
    return entries


def _check_ownership(target: Path, env: str, tree: _Tree, files: Mapping[str, bytes],
                     new_hashes: dict[str, str], force: bool,
                     diags: Diagnostics) -> dict[str, str]:
    """Report MLC901/902/903; return the sha256 of every regular file that may be replaced."""
    disk_hashes: dict[str, str] = {}
    for path in sorted(tree.index):
        kind = tree.entries.get(path)
        if kind is None:
            continue  # deleted by hand: regenerating (or forgetting) it loses nothing
        if kind == "file":
            disk_hashes[path] = _sha256((target / path).read_bytes())
            if disk_hashes[path] in (tree.index[path], new_hashes.get(path)):
                continue
        shown = f"{env}/{path}"
        if force:
            diags.warning("MLC902", f"{shown} was edited by hand; overwritten (--force)",
                          span=Span(str(target / path)))
        else:
            diags.error("MLC902", f"{shown} was edited by hand since mlc generated it",
                        span=Span(str(target / path)),
                        help="move the change into ml.yaml or the environment overlay and "
                             "run mlc apply again, or pass --force to discard the edit")

    new_dirs = {p.rsplit("/", i)[0] for p in files for i in range(1, p.count("/") + 1)}
    for path, kind in sorted(tree.entries.items()):
        if path in tree.index:
            continue
        shown = f"{env}/{path}"
        if kind == "other":
            diags.error("MLC903", f"{shown} is not a regular file, link or folder; mlc "
                        "cannot carry it over into the new tree", span=Span(str(target / path)),
                        help="move it out of the output folder")
            continue
        parts = path.split("/")
        ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
        clash = next((a for a in ancestors if a in files), None)
        if path in files or (kind != "dir" and path in new_dirs) or clash:
            notes = [f"mlc now generates {env}/{clash}"] if clash else []
            diags.error("MLC901", f"{shown} was not generated by mlc; move it away or delete it",
                        span=Span(str(target / path)), notes=notes)
    return disk_hashes


def _index_bytes(hashes: Mapping[str, str]) -> bytes:
    doc = {"format": INDEX_FORMAT, "generator": "mlc", "version": __version__,
           "files": dict(sorted(hashes.items()))}
    return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------
# Writing


# Lock files held, and how deeply: flock does not nest (a second descriptor of the same
# file would wait for the first), and `output_lock` holds the lock around several
# `write_environment` calls. Keyed by thread (and process) too, so that another thread
# waits on flock instead of walking in.
_held: dict[tuple[str, int, int], int] = {}


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    key = (os.path.realpath(lock_path), os.getpid(), threading.get_ident())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    # never through a link: a `.mlc.lock` committed as a link would have mlc create or lock
    # a file wherever it points; and only a regular file (a FIFO would block the lock)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                 | os.O_NONBLOCK, FILE_MODE)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "the output folder's lock is not a regular file",
                          str(lock_path))
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held[key] = 1
        yield
    finally:
        _held.pop(key, None)
        os.close(fd)  # closing the descriptor releases the lock, even after a crash


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold the output folder's lock across several reads and writes.

    `mlc apply` reads every environment's tree, plans, checks and writes them all under one
    lock, so that two applies never interleave, not even one environment at a time.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir / LOCK_NAME):
        finish_interrupted(out_dir)  # what is read under the lock is never half a transaction
        yield


def check_write(out_dir: Path, env: str, files: Mapping[str, bytes], *, force: bool = False,
                diags: Diagnostics) -> bool:
    """Whether `write_environment` would write, reporting its refusals; writes no file.

    A multi-environment apply checks every environment first, so that a refusal in one
    leaves all of them untouched. (It may finish a crashed run's swap: see `_recover`.)
    """
    with output_lock(out_dir):
        return _examine(Path(out_dir), env, files, force, diags) is not None


def _examine(out_dir: Path, env: str, files: Mapping[str, bytes], force: bool,
             diags: Diagnostics) -> tuple[_Tree, dict[str, str], dict[str, str]] | None:
    """Under the lock: the tree on disk, the new and the on-disk hashes; None if refused."""
    errors_before = len(diags.errors)
    target = out_dir / env
    _recover(target, staging_of(out_dir, env), aside_of(out_dir, env))
    tree = _scan(target, env, diags)
    if tree is None:
        return None
    new_hashes = {path: _sha256(data) for path, data in sorted(files.items())}
    disk_hashes = _check_ownership(target, env, tree, files, new_hashes, force, diags)
    if len(diags.errors) > errors_before:
        return None
    return tree, new_hashes, disk_hashes


def _recover(target: Path, staging: Path, aside: Path) -> None:
    """Undo what a crashed run left behind; we hold the lock, so no other run is live.

    The old tree is renamed aside only once the staged tree is complete, and the staged tree
    is renamed into place only after that. So an aside folder with no target means the crash
    fell between the two renames: the old tree comes back. An aside folder next to a target
    means the swap finished: the target is the complete new tree. A staging folder is never
    the only copy of anything (incomplete, or the old tree after an exchange): delete it.
    """
    if os.path.lexists(aside):
        if os.path.lexists(target):
            _remove(aside)
        else:
            os.rename(aside, target)
    _remove(staging)


def _build(staging: Path, target: Path, carried: Mapping[str, str],
           files: Mapping[str, bytes], index_bytes: bytes) -> None:
    _remove(staging)
    made: set[Path] = set()
    _mkdir(staging, made)
    for path, kind in sorted(carried.items()):
        src, dst = target / path, staging / path
        _mkdir(dst.parent, made)
        if kind == "dir":
            _mkdir(dst, made)
        elif kind == "link":
            os.symlink(os.readlink(src), dst)
        else:
            # A hard link is instant and shares the inode, so an edit the user makes to the
            # old name before the swap still lands in the new tree.
            try:
                os.link(src, dst, follow_symlinks=False)
            except OSError:
                shutil.copy2(src, dst, follow_symlinks=False)
    for path, data in sorted(files.items()):
        dst = staging / path
        _mkdir(dst.parent, made)
        _write_file(dst, data)
    _write_file(staging / INDEX_NAME, index_bytes)
    _make_durable(staging, made)


def _make_durable(staging: Path, made: set[Path]) -> None:
    """Every file and folder entry of the staged tree on disk, before the swap shows it.

    One `syncfs` of the output's filesystem instead of an fsync per file: a tree of
    thousands of files cost as many journal commits, a third of compile time on a busy
    disk. Where syncfs is missing, each file and then each folder is fsynced.
    """
    if _syncfs is not None:
        fd = os.open(staging, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            if _syncfs(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code), str(staging))
        finally:
            os.close(fd)
        return
    for dirpath, _, filenames in os.walk(staging):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    for folder in sorted(made, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(folder)


def _load_syncfs():
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):  # not Linux (or no glibc symbol): fsync each file
        return None
    syncfs.argtypes = (ctypes.c_int,)
    syncfs.restype = ctypes.c_int
    return syncfs


_syncfs = _load_syncfs()


def _mkdir(path: Path, made: set[Path]) -> None:
    if path in made:
        return
    if path.parent not in made and not path.parent.exists():
        _mkdir(path.parent, made)
    if not path.is_dir():
        os.mkdir(path)
        os.chmod(path, DIR_MODE)  # explicit: the umask must not decide what git records
    made.add(path)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), FILE_MODE)
        fh.write(data)  # made durable with the whole tree, by _make_durable
