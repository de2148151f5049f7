"""The overlay that `mlc promote` and `mlc pin` edit in place: read bounded, replaced whole.

An edit must change the one file mlc compiled and nothing else. A pull request controls the
project folder, so the overlay may be a link (writing through it would change the file it
points at, and replacing it would silently turn the link into a file), a FIFO or a device
(reading would hang or never end); the temporary file beside it may be planted as a link
too. Hence: a link is refused before anything is read, every read goes through reading.py
(regular files inside the project, at most the loader's size cap), and the new text goes
to a fresh file that no one else can have named (O_EXCL), which then replaces the overlay
by rename, so a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .diagnostics import Diagnostics, Span
from .load import MAX_FILE_BYTES
from .reading import ReadRefused, read_project_file

__all__ = ["EDIT_LINKED", "EDIT_FAILED", "Overlay", "check_not_linked", "read_overlay",
           "replace_overlay"]

EDIT_LINKED = "MLC022"
EDIT_FAILED = "MLC023"


@dataclass(frozen=True)
class Overlay:
    root: Path
    name: str  # environments/<env>.yaml, as diagnostics show it
    text: str
    mode: int  # its permission bits, kept by the replacement

    @property
    def path(self) -> Path:
        return self.root / self.name


def check_not_linked(root: Path, name: str, command: str, diags: Diagnostics) -> bool:
    """False (after a located error) when `name` is a symbolic link; where it points is not
    said, since that may be exactly what must not reach a CI log."""
    if not os.path.islink(root / name):
        return True
    diags.error(EDIT_LINKED, f"{name} is a symbolic link; {command} edits only a regular "
                "file and did not follow it", span=Span(name),
                help=f"replace the link with a copy of the file it points at, then run "
                f"{command} again")
    return False


def read_overlay(root: Path, name: str, command: str, diags: Diagnostics) -> Overlay | None:
    """The overlay's text, read as the compile read it; None after a located error."""
    if not check_not_linked(root, name, command, diags):
        return None
    try:
        raw = read_project_file(root, name, MAX_FILE_BYTES)
        mode = os.lstat(root / name).st_mode
        if len(raw) > MAX_FILE_BYTES:
            raise ReadRefused("too-large", f"larger than {MAX_FILE_BYTES} bytes")
        text = raw.decode("utf-8")
    except (ReadRefused, OSError, UnicodeDecodeError) as err:
        detail = err.detail if isinstance(err, ReadRefused) else \
            "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else err.strerror
        diags.error(EDIT_FAILED, f"cannot read {name} for editing ({detail}); it was not "
                    "changed", span=Span(name), help=f"make {name} a readable regular file "
                    f"inside the project, then run {command} again")
        return None
    return Overlay(root=root, name=name, text=text, mode=stat.S_IMODE(mode))


def replace_overlay(overlay: Overlay, new_text: str, command: str,
                    diags: Diagnostics) -> bool:
    """Replace the overlay by `new_text` atomically; False (after a located error) when it
    could not be written, in which case the overlay is as it was."""
    path = overlay.path
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".mlc-tmp",
                                   dir=path.parent)
        with os.fdopen(fd, "wb") as out:
            out.write(new_text.encode("utf-8"))
            out.flush()
            os.fchmod(out.fileno(), overlay.mode)
            os.fsync(out.fileno())
        # what is replaced must still be the regular file that was read
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise OSError(0, "it was replaced by something else while mlc worked")
        os.replace(tmp, path)
        tmp = None
        _sync_folder(path.parent)
    except OSError as err:
        diags.error(EDIT_FAILED, f"cannot write {overlay.name} ({err.strerror or err}); it was "
                    "not changed", span=Span(overlay.name),
                    help=f"make {path.parent.name}/ writable (and the disk not full), then run "
                    f"{command} again")
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return True


def _sync_folder(folder: Path) -> None:
    # the rename is durable only once the folder's entry is on disk
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
