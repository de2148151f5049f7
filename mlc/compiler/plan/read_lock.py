"""The lock `mlc plan` holds while it reads the output folder's trees.

Writers (`mlc compile --out`, `mlc apply`) swap every environment in one journaled
transaction under the folder's lock (write.py, swap.py). A plan that read without the lock
could compare against half a transaction, and would then show changes that are not there,
or miss ones that are, with nothing to say so. So a lock that cannot be taken stops the
plan with a located error rather than a silent unlocked read.

A folder mlc may not write into (a read-only checkout) can still be read safely when its
lock file is there: a shared lock on a read-only descriptor still waits for a writer, and a
journal left by a killed writer, which only a writer may finish, is refused instead.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..diagnostics import Diagnostics, Span
from ..swap import JOURNAL_NAME
from ..write import LOCK_NAME, output_lock

__all__ = ["LOCK_FAILED", "LockUnavailable", "read_lock", "report_lock_error"]

LOCK_FAILED = "MLC024"
# What opening the lock for writing fails with in a folder this process may not write into.
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


class LockUnavailable(Exception):
    def __init__(self, lock_path: Path, reason: str):
        super().__init__(reason)
        self.lock_path = lock_path
        self.reason = reason


@contextmanager
def read_lock(out_dir: Path) -> Iterator[None]:
    """Hold the output folder's lock while the body reads its trees; raises LockUnavailable
    when it cannot be held. A folder that does not exist has nothing to read or wait for."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        yield
        return
    lock_path = out_dir / LOCK_NAME
    try:
        held = output_lock(out_dir)
        held.__enter__()  # also finishes a transaction a killed writer left behind
    except OSError as exc:
        if exc.errno not in _READ_ONLY:
            raise LockUnavailable(lock_path, _why(exc)) from exc
        with _shared_lock(out_dir, lock_path, exc):
            yield
        return
    try:
        yield
    finally:
        held.__exit__(None, None, None)


@contextmanager
def _shared_lock(out_dir: Path, lock_path: Path, denied: OSError) -> Iterator[None]:
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        reason = f"it does not exist, and mlc may not create it ({_why(denied)})" \
            if exc.errno == errno.ENOENT else _why(exc)
        raise LockUnavailable(lock_path, reason) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError as exc:
            raise LockUnavailable(lock_path, _why(exc)) from exc
        if os.path.lexists(out_dir / JOURNAL_NAME):
            raise LockUnavailable(lock_path, "a write was interrupted and only a writer can "
                                  f"finish it, but mlc may not write here ({_why(denied)})")
        yield
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def report_lock_error(exc: LockUnavailable, diags: Diagnostics) -> None:
    diags.error(LOCK_FAILED, f"cannot take the output folder's lock {exc.lock_path}: "
                f"{exc.reason}; without it the plan could compare with half a write",
                span=Span(str(exc.lock_path)),
                help="make the output folder writable for mlc (or run `mlc compile --out` "
                "once, which creates the lock file), or compare with git instead: "
                "`mlc plan --base-ref HEAD`")
