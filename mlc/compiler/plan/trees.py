"""The trees a plan compares with: an environment folder on disk, or as committed at a git ref.

Only files listed in the folder's `.mlc-index.json` are mlc's ("ours"): the plan compares the
new output with those, and carries every other file as it is, exactly as `write` does. The
index also records each file's hash at the last write, which tells a hand edit from mlc's
own output.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .. import write
from ..write import INDEX_NAME

# write.py renames the old tree to this name between the two renames of a swap; a crash
# right there leaves the old tree only under it (the next write moves it back).
_ASIDE = ".mlc-old-{env}"


class TreeError(Exception):
    """The tree cannot be read (a broken index, an unknown git ref); a user error."""


@dataclass(frozen=True)
class Tree:
    location: str  # how the plan names it: `deploy/prod` or `origin/main:deploy/prod`
    exists: bool
    index: dict[str, str] = field(default_factory=dict)  # path -> sha256 at the last write
    files: dict[str, bytes] = field(default_factory=dict)  # every regular file but the index
    others: frozenset[str] = frozenset()  # links and other non-regular entries
    index_bytes: bytes | None = None

    def ours(self) -> dict[str, bytes]:
        """mlc's files as they are now (hand edits included), by path."""
        return {p: self.files[p] for p in sorted(self.index) if p in self.files}

    def hand_edited(self) -> list[str]:
        return [p for p in sorted(self.index)
                if p in self.files and sha256(self.files[p]) != self.index[p]]

    def fingerprint(self) -> dict[str, str]:
        """sha256 of every regular file, the index included: what a saved plan checks."""
        out = {p: sha256(b) for p, b in self.files.items()}
        if self.index_bytes is not None:
            out[INDEX_NAME] = sha256(self.index_bytes)
        out.update({p: "not-a-file" for p in self.others})
        return dict(sorted(out.items()))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_index(data: bytes) -> dict[str, str]:
    """The writer's index of a tree (write.parse_index), a damaged one as a TreeError."""
    try:
        return dict(sorted(write.parse_index(data).items()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TreeError(f"{INDEX_NAME} cannot be read: {exc}") from None


# ---------------------------------------------------------------------------------------
# On disk


def read_disk_tree(out_dir: Path, env: str, location: str) -> Tree:
    """The folder `out_dir/env` as it is now; call it under write.output_lock."""
    target = out_dir / env
    if not os.path.lexists(target) and os.path.isdir(out_dir / _ASIDE.format(env=env)):
        target = out_dir / _ASIDE.format(env=env)
    if not os.path.lexists(target):
        return Tree(location, exists=False)
    if target.is_symlink() or not target.is_dir():
        raise TreeError(f"{location} is not a folder")
    files: dict[str, bytes] = {}
    others: set[str] = set()
    index_bytes = None
    for dirpath, dirnames, filenames in os.walk(target):
        rel_dir = os.path.relpath(dirpath, target).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in sorted(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)
                others.add(prefix + name)
        for name in filenames:
            full, rel = os.path.join(dirpath, name), prefix + name
            if not stat.S_ISREG(os.lstat(full).st_mode):
                others.add(rel)
            elif rel == INDEX_NAME:
                index_bytes = Path(full).read_bytes()
            else:
                files[rel] = Path(full).read_bytes()
    index = parse_index(index_bytes) if index_bytes is not None else {}
    return Tree(location, True, index, dict(sorted(files.items())), frozenset(others),
                index_bytes)


# ---------------------------------------------------------------------------------------
# At a git ref


@dataclass(frozen=True)
class GitBase:
    ref: str
    commit: str
    toplevel: Path


def open_git_base(root: Path, ref: str) -> GitBase:
    toplevel = _git(root, "rev-parse", "--show-toplevel").decode().strip()
    if ref.startswith("-"):
        raise TreeError(f"`{ref}` is not a git ref")
    commit = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options",
                  f"{ref}^{{commit}}", what=f"no commit `{ref}` in this repository "
                  "(in CI, fetch the base branch: actions/checkout with fetch-depth: 0)")
    return GitBase(ref, commit.decode().strip(), Path(toplevel).resolve())


def read_git_tree(base: GitBase, out_dir: Path, env: str) -> Tree:
    rel = os.path.relpath(Path(out_dir).resolve() / env, base.toplevel).replace(os.sep, "/")
    location = f"{base.ref}:{rel}"
    if rel == ".." or rel.startswith("../"):
        raise TreeError(f"the output folder {out_dir} is outside the git repository "
                        f"{base.toplevel}")
    listing = _git(base.toplevel, "ls-tree", "-r", "-z", "--full-tree", base.commit, "--",
                   rel + "/")
    blobs: dict[str, str] = {}
    others: set[str] = set()
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, _, path = entry.partition(b"\t")
        mode, kind, sha = meta.decode().split()
        name = path.decode("utf-8", errors="surrogateescape")[len(rel) + 1:]
        if kind == "blob" and mode in ("100644", "100755"):
            blobs[name] = sha
        else:
            others.add(name)  # links and submodules: never mlc's
    if not blobs and not others:
        return Tree(location, exists=False)
    contents = _cat_blobs(base.toplevel, list(blobs.values()))
    files = {name: contents[sha] for name, sha in blobs.items()}
    index_bytes = files.pop(INDEX_NAME, None)
    index = parse_index(index_bytes) if index_bytes is not None else {}
    return Tree(location, True, index, dict(sorted(files.items())), frozenset(others),
                index_bytes)


def _cat_blobs(cwd: Path, shas: list[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    stdin = "".join(f"{s}\n" for s in dict.fromkeys(shas)).encode()
    data = _git(cwd, "cat-file", "--batch", stdin=stdin)
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        sha, kind, size = data[pos:end].decode().split()
        start = end + 1
        out[sha] = data[start:start + int(size)]
        pos = start + int(size) + 1  # content, then a newline
    return out


def _git(cwd: Path, *args: str, stdin: bytes | None = None, what: str | None = None) -> bytes:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True,
                                timeout=120, env={**os.environ, "GIT_TERMINAL_PROMPT": "0",
                                                  "LC_ALL": "C"})
    except FileNotFoundError:
        raise TreeError("git is not installed; --base-ref needs it") from None
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise TreeError(what or f"git {args[0]} failed: {detail[-1] if detail else 'no output'}")
    return result.stdout
