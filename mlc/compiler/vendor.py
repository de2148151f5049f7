"""Platform files from a pinned git commit: `extends: {git: URL, rev: <commit>, path: FILE}`.

The compiler never reaches the network: it reads the commit's files from a vendored copy,
`.mlc/vendor/<key>/`, keyed by URL and commit, which `mlc vendor` fills (the one command
here that fetches; in CI run it before `mlc plan`, or commit the folder). Only a full
40-hex commit is accepted: a branch or tag moves, so the same ml.yaml would compile to
different trees on different days. The copy holds the commit's regular files (no links)
and a `.mlc-vendor.json` naming the URL and commit, which compile checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

VENDOR_DIR = ".mlc/vendor"
MARKER = ".mlc-vendor.json"
KEYS = ("git", "rev", "path")
COMMIT = re.compile(r"[0-9a-f]{40}")
# What a git URL may hold: no spaces, quotes or control characters (it is shown in the
# output's provenance header)
URL = re.compile(r"(https://|ssh://|file://|git@)[A-Za-z0-9._~:/?#@!$&()*+,;=%-]+")
MAX_FILE = 1 << 20

NOT_VENDORED = "MLC590"
MOVING_REF = "MLC591"
BAD_GIT_EXTENDS = "MLC592"
VENDOR_FAILED = "MLC593"


@dataclass(frozen=True)
class GitRef:
    url: str
    rev: str
    path: str  # inside the repository, POSIX, relative

    @property
    def key(self) -> str:
        digest = hashlib.sha256(f"{self.url}\n{self.rev}".encode()).hexdigest()
        return f"{self.rev[:12]}-{digest[:12]}"

    def folder(self, root: Path) -> Path:
        return Path(root) / VENDOR_DIR / self.key

    def shown(self) -> str:
        """How the provenance names the layer: the URL, the commit and the file."""
        return f"{self.url}@{self.rev}:{self.path}"


def parse(value: dict[str, Any]) -> tuple[GitRef | None, str, str]:
    """The reference, or None with (code, what is wrong) for a located error."""
    unknown = sorted(set(value) - set(KEYS))
    missing = [k for k in KEYS if k not in value]
    if unknown or missing:
        what = (f"unknown key `{unknown[0]}`" if unknown else f"missing `{missing[0]}`")
        return None, BAD_GIT_EXTENDS, what
    url, rev, path = (value[k] for k in KEYS)
    if not all(isinstance(v, str) for v in (url, rev, path)):
        return None, BAD_GIT_EXTENDS, "`git`, `rev` and `path` are strings (quote a commit " \
            "that YAML reads as a number: `rev: \"1234...\"`)"
    if not URL.fullmatch(url):
        return None, BAD_GIT_EXTENDS, f"`{url[:80]}` is not a git URL (https://, ssh://, " \
            "file:// or git@host:path, without spaces)"
    if not COMMIT.fullmatch(rev):
        return None, MOVING_REF, f"`rev: {rev[:80]}` is not a commit"
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts or "\\" in path:
        return None, BAD_GIT_EXTENDS, f"`path: {path[:80]}` is not a path inside the repository"
    return GitRef(url, rev, path), "", ""


def check_vendored(ref: GitRef, root: Path) -> str | None:
    """None where the vendored copy is there and of this URL and commit; else why not."""
    folder = ref.folder(root)
    try:
        marker = json.loads((folder / MARKER).read_text("utf-8"))
    except (OSError, ValueError):
        return f"{ref.url} at {ref.rev[:12]} is not vendored (no {VENDOR_DIR}/{ref.key}/)"
    if marker != {"git": ref.url, "rev": ref.rev}:
        return f"{VENDOR_DIR}/{ref.key}/ holds another repository or commit than " \
            f"{ref.url} at {ref.rev[:12]}"
    return None


def vendor(ref: GitRef, root: Path) -> None:
    """Fetch the commit's files into the vendored copy; raises VendorError."""
    if check_vendored(ref, root) is None:
        return
    target = ref.folder(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlc-vendor-") as tmp:
        bare = Path(tmp) / "repo.git"
        _git(Path(tmp), "clone", "--quiet", "--bare", "--no-tags", "--", ref.url, str(bare),
             what=f"cannot clone {ref.url}")
        _git(bare, "cat-file", "-e", f"{ref.rev}^{{commit}}",
             what=f"{ref.url} has no commit {ref.rev}")
        listing = _git(bare, "ls-tree", "-r", "-z", "--full-tree", ref.rev,
                       what=f"cannot list commit {ref.rev}").split(b"\0")
        staging = Path(tempfile.mkdtemp(prefix=f".{ref.key}.", dir=target.parent))
        try:
            for entry in filter(None, listing):
                meta, _, name = entry.partition(b"\t")
                mode, kind, sha = meta.decode().split()
                path = name.decode("utf-8", errors="surrogateescape")
                if kind != "blob" or mode not in ("100644", "100755") \
                        or ".." in PurePosixPath(path).parts:
                    continue  # links and submodules: a platform file is a plain file
                data = _git(bare, "cat-file", "blob", sha, what=f"cannot read {path}")
                if len(data) > MAX_FILE:
                    continue
                out = staging / path
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
            (staging / MARKER).write_text(json.dumps({"git": ref.url, "rev": ref.rev},
                                                     sort_keys=True) + "\n", "utf-8")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class VendorError(Exception):
    pass


def _git(cwd: Path, *args: str, what: str) -> bytes:
    import subprocess  # only `mlc vendor` runs git; validate reads what it left

    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=300,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    except FileNotFoundError:
        raise VendorError("git is not installed; `mlc vendor` needs it") from None
    except subprocess.TimeoutExpired:
        raise VendorError(f"{what}: git took longer than 5 minutes") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise VendorError(f"{what}: {detail[-1] if detail else 'git failed'}")
    return done.stdout
