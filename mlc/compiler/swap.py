"""Moving staged trees into place, several environments as one transaction.

write.py stages every environment's complete new tree in `out_dir/.mlc-staging-<env>`; this
module swaps them in so that a crash or an error at any moment leaves either every old tree
or every new one, never prod new and staging old:

1. the journal `out_dir/.mlc-transaction.json` is written (and fsynced) first, naming each
   environment and the sha256 of its new index. Before it exists nothing has moved, and a
   crashed run's staging folders are simply deleted: every environment keeps its old tree;
2. each environment is swapped: one atomic exchange where the kernel offers it (Linux
   renameat2), otherwise `target -> .mlc-old-<env>` then `staging -> target`. The old tree
   stays (in the staging or the aside folder) until the journal is gone;
3. an error during the swaps swaps back those already done, then removes the journal;
4. the journal is removed (the transaction is over), then the old trees.

A run that finds a journal (the previous one was killed during step 2 or 3) finishes the
transaction forward: every environment whose index is not yet the new one gets its staged
tree, which is still in the staging folder (never swapped, or swapped back).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

JOURNAL_NAME = ".mlc-transaction.json"
INDEX_NAME = ".mlc-index.json"
FILE_MODE = 0o644


class DamagedJournal(OSError):
    """The journal of an interrupted transaction cannot be read; nothing is touched."""


def staging_of(out_dir: Path, env: str) -> Path:
    return out_dir / f".mlc-staging-{env}"


def aside_of(out_dir: Path, env: str) -> Path:
    return out_dir / f".mlc-old-{env}"


def commit(out_dir: Path, new_index_sha: Mapping[str, str]) -> None:
    """Swap every staged environment in, or (on an OSError) none; see the module docstring."""
    if not new_index_sha:
        return
    try:
        _write_journal(out_dir, new_index_sha)
    except BaseException:
        _discard(out_dir / (JOURNAL_NAME + ".partial"))
        if os.path.lexists(out_dir / JOURNAL_NAME):  # renamed, then the fsync failed
            _remove_journal(out_dir)
        raise
    done: list[tuple[str, str]] = []  # (env, how it was swapped)
    try:
        for env in sorted(new_index_sha):
            done.append((env, _swap_in(out_dir, env)))
    except BaseException:
        try:
            for env, how in reversed(done):
                _swap_back(out_dir, env, how)
            _remove_journal(out_dir)
        except OSError:
            pass  # the journal stays: the next run finishes the transaction forward
        raise
    try:
        _remove_journal(out_dir)
    except OSError:
        pass  # every environment is new; the next run finds that and removes the journal
    for env in sorted(new_index_sha):
        _discard(staging_of(out_dir, env))
        _discard(aside_of(out_dir, env))


def finish_interrupted(out_dir: Path) -> None:
    """Finish a transaction a killed run left behind (call under the output lock)."""
    journal = out_dir / JOURNAL_NAME
    if not os.path.lexists(journal):
        return
    try:
        wanted = json.loads(journal.read_bytes().decode("utf-8"))["environments"]
        if not isinstance(wanted, dict):
            raise TypeError("environments")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise DamagedJournal(errno.EINVAL, f"{journal} is damaged ({exc})") from None
    for env, sha in sorted(wanted.items()):
        target, staging, aside = out_dir / env, staging_of(out_dir, env), aside_of(out_dir, env)
        if _index_sha(target) == sha or _index_sha(staging) != sha:
            continue  # already swapped (or, should the staged tree be gone, left as it is)
        if os.path.lexists(target):
            remove(aside)
            os.rename(target, aside)
        os.rename(staging, target)
        fsync_dir(out_dir)
    _remove_journal(out_dir)
    for env in sorted(wanted):
        _discard(staging_of(out_dir, env))
        _discard(aside_of(out_dir, env))


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries durable, as far as the filesystem allows. Never raises: it
    runs right after renames that already happened, and a failure here must not make the
    caller believe they did not (a swap that is not rolled back)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------


def _swap_in(out_dir: Path, env: str) -> str:
    target, staging, aside = out_dir / env, staging_of(out_dir, env), aside_of(out_dir, env)
    if not os.path.lexists(target):
        os.rename(staging, target)
        fsync_dir(out_dir)
        return "new"
    if _exchange is not None:
        try:
            _exchange(staging, target)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
        else:
            fsync_dir(out_dir)
            return "exchanged"  # the old tree is now in the staging folder
    remove(aside)
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(aside, target)
        raise
    fsync_dir(out_dir)
    return "renamed"  # the old tree is in the aside folder


def _swap_back(out_dir: Path, env: str, how: str) -> None:
    target, staging, aside = out_dir / env, staging_of(out_dir, env), aside_of(out_dir, env)
    if how == "exchanged":
        _exchange(staging, target)
    elif how == "renamed":
        os.rename(target, staging)
        os.rename(aside, target)
    else:
        os.rename(target, staging)
    fsync_dir(out_dir)


def _write_journal(out_dir: Path, new_index_sha: Mapping[str, str]) -> None:
    doc = {"environments": dict(sorted(new_index_sha.items())), "format": 1}
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
    partial = out_dir / (JOURNAL_NAME + ".partial")
    remove(partial)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(partial, out_dir / JOURNAL_NAME)  # the commit point: durable once fsynced
    fsync_dir(out_dir)


def _remove_journal(out_dir: Path) -> None:
    os.unlink(out_dir / JOURNAL_NAME)
    fsync_dir(out_dir)


def _discard(path: Path) -> None:
    # an old tree that cannot be deleted now is deleted by the next run's recovery
    try:
        remove(path)
    except OSError:
        pass


def _index_sha(tree: Path) -> str | None:
    try:
        return hashlib.sha256((tree / INDEX_NAME).read_bytes()).hexdigest()
    except OSError:
        return None


def _load_exchange() -> Callable[[Path, Path], None] | None:
    """renameat2(RENAME_EXCHANGE) (Linux >= 3.15) swaps two folders in one atomic step, which
    closes the moment between two renames when the environment folder does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint)
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2

    def exchange(a: Path, b: Path) -> None:
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange):
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(a), None, str(b))

    return exchange


_exchange = _load_exchange()
