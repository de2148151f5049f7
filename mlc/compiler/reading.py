"""Bounded reads of the project's own files.

Everything mlc reads from a project folder goes through `read_project_file`: a pull request
controls that folder, and CI prints mlc's diagnostics into the pull request, so a file named
like a project file must not become a way to read something else (a link to
`/proc/self/environ`), to hang the run (a FIFO), or to make it read without end (a device).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ReadRefused", "read_project_file", "read_regular_file"]


@dataclass(frozen=True)
class ReadRefused(Exception):
    """Why a file was not read: `kind` is "missing", "outside", "not-regular", "too-large"
    or "os"; `detail` says what was found."""

    kind: str
    detail: str


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of a regular file (so the caller can tell it is too large).

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer, and the
    type is checked on the open descriptor, so a file swapped for a FIFO or a device after a
    first look is still refused before anything is read from it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError as err:
        raise ReadRefused("missing", "not found") from err
    except OSError as err:
        raise ReadRefused("os", err.strerror or str(err)) from err
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ReadRefused("not-regular", _kind_of(mode))
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as err:
        raise ReadRefused("os", err.strerror or str(err)) from err
    finally:
        os.close(fd)


def read_project_file(root: Path, relative: str, limit: int) -> bytes:
    """`root/relative`, refused unless it resolves to a regular file inside `root`."""
    path = Path(root) / relative
    if not os.path.lexists(path):
        raise ReadRefused("missing", "not found")
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        # the target is not named: it is exactly what must not reach a CI log
        raise ReadRefused("outside", "a link to a file outside the project folder")
    if os.path.islink(path) and not os.path.exists(path):
        raise ReadRefused("missing", "a link to a file that does not exist")
    return read_regular_file(Path(real), limit)
