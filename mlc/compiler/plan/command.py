"""The `mlc plan` command: compile, read the old trees, compare, print, maybe save.

Exit codes: 0 planned (or, with --detailed-exitcode, no changes), 2 with --detailed-exitcode
when anything would change, 1 when the project or the old tree has errors, or the output
folder's lock cannot be taken (read_lock.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

from ..diagnostics import Diagnostics
from . import formats, layers, saved
from .build import build_plan, environments_to_read, read_trees
from .read_lock import LockUnavailable, read_lock, report_lock_error
from .risks import secret_facts
from .trees import TreeError, open_git_base

EXIT_OK, EXIT_INVALID, EXIT_CHANGES, EXIT_USAGE = 0, 1, 2, 2
TREE_ERROR = "MLC910"


def run_plan(root: Path, envs: list[str] | None, out_dir: Path, *, fmt: str = "text",
             base_ref: str | None = None, save: Path | None = None, detailed: bool = False,
             color: bool = False, diags: Diagnostics, stdout: IO[str] | None = None) -> int:
    from ..pipeline import compile_project

    stdout = stdout or sys.stdout
    if save is not None and base_ref is not None:
        print("mlc plan: --save cannot be combined with --base-ref: a saved plan is applied "
              "to the output folder, so it must be planned against it", file=sys.stderr)
        return EXIT_USAGE
    compiled = compile_project(root, envs, diags, facts=secret_facts)
    to_read = environments_to_read([c.env for c in compiled], compiled[0].project.environments)
    try:
        if base_ref is not None:
            git = open_git_base(root, base_ref)
            trees = read_trees(out_dir, to_read, git)
            rel = os.path.relpath(Path(out_dir).resolve(), git.toplevel).replace(os.sep, "/")
            base = {"type": "git", "ref": base_ref, "commit": git.commit, "path": rel}
        else:
            with read_lock(out_dir):
                trees = read_trees(out_dir, to_read, shown_out=str(out_dir))
            base = {"type": "directory", "path": str(out_dir)}
    except TreeError as exc:
        report_tree_error(exc, diags)
        return EXIT_INVALID
    except LockUnavailable as exc:
        report_lock_error(exc, diags)
        return EXIT_INVALID
    plan = build_plan(root, compiled, trees, base)
    if base_ref is not None:
        try:
            layers.attach(plan, root, out_dir, git)
        except TreeError as exc:
            report_tree_error(exc, diags)
            return EXIT_INVALID
    stdout.write(formats.render(plan, fmt, color=color))
    if save is not None:
        _write_file(save, saved.dump(plan, root, out_dir, trees))
        print(f"Saved the plan to {save}; apply it with `mlc apply {save}`.", file=sys.stderr)
    if detailed:
        return EXIT_CHANGES if plan.has_changes else EXIT_OK
    return EXIT_OK


def report_tree_error(exc: TreeError, diags: Diagnostics) -> None:
    diags.error(TREE_ERROR, f"cannot read the tree to compare with: {exc}",
                help="restore the output folder (or its .mlc-index.json) from git, or check "
                     "the --base-ref and --out you gave")


def _write_file(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
