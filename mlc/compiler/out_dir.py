"""Where `--out` may point: checked before compile, plan or apply touches it.

An output folder is replaced environment by environment, and files mlc did not generate are
carried over, so a folder that holds the project (or is the project) would have the project
itself copied into staging trees; a folder that is a link would have mlc write wherever the
link points, which a pull request can change; a folder mlc cannot write must fail with the
folder named, not with a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from .diagnostics import Diagnostics, Span

OUT_HOLDS_PROJECT = "MLC905"
OUT_IS_LINK = "MLC906"
OUT_NOT_WRITABLE = "MLC907"


def check_out_dir(root: Path, out_dir: Path, diags: Diagnostics, *, writing: bool = True) -> bool:
    """Whether `out_dir` is a safe output folder for the project in `root`; reports why not.
    `writing=False` (plan) also allows a folder that does not exist or is read-only."""
    real_root = os.path.realpath(root)
    real_out = os.path.realpath(out_dir)
    shown = str(out_dir)
    if os.path.islink(out_dir):
        diags.error(OUT_IS_LINK, f"the output folder {shown} is a symbolic link",
                    span=Span(shown), help="point --out at the real folder; mlc does not "
                    "write through links, whose target a commit can change")
        return False
    if os.path.commonpath([real_out, real_root]) == real_out:
        what = "the project folder itself" if real_out == real_root else \
            "a folder that contains the project"
        diags.error(OUT_HOLDS_PROJECT, f"the output folder {shown} is {what}",
                    span=Span(shown), help="use a folder of its own, such as the default "
                    "`deploy/` inside the project")
        return False
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        diags.error("MLC903", f"the output folder {shown} is not a folder", span=Span(shown),
                    help="move the file away, or point --out elsewhere")
        return False
    return _writable(out_dir, shown, diags) if writing else True


def _writable(out_dir: Path, shown: str, diags: Diagnostics) -> bool:
    # Asked without writing anything: a compile that fails later must leave no trace, not
    # even a lock file. What this cannot foresee (a quota, a full disk) is MLC904 later.
    probe = Path(out_dir)
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            problem = f"{probe} is not a folder"
        elif os.statvfs(probe).f_flag & os.ST_RDONLY:
            problem = f"{probe} is on a read-only file system"
        elif not os.access(probe, os.W_OK | os.X_OK):
            problem = f"no permission to write in {probe}"
        else:
            return True
    except OSError as exc:
        problem = exc.strerror or str(exc)
    diags.error(OUT_NOT_WRITABLE, f"the output folder {shown} cannot be written: {problem}",
                span=Span(shown), help="fix its permissions (or mount), or point --out at a "
                "folder you can write")
    return False
