"""The contract between backends and `render`: one generated file, not yet serialized.

Backends return data, never text, so that every byte of the output tree is produced by one
serializer (`render.py`) and formatting rules live in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Deliberately narrow: these names are safe in git, in URLs, in shells and on every filesystem
# that a GitOps checkout may land on.
_PATH_CHARS = re.compile(r"[A-Za-z0-9._/-]+")


def check_path(path: str) -> None:
    """Raise ValueError unless `path` is a clean posix path relative to an environment folder.

    A bad path is a bug in a backend, not in the user's project, hence an exception rather
    than a diagnostic.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"output path must be a non-empty string, got {path!r}")
    if not _PATH_CHARS.fullmatch(path):
        raise ValueError(f"output path {path!r} may only contain [A-Za-z0-9._/-]")
    if path.startswith("/"):
        raise ValueError(f"output path {path!r} must be relative")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"output path {path!r} has an empty, '.' or '..' segment")


@dataclass(frozen=True)
class OutputFile:
    """One file of an environment's output tree.

    `content` depends on the extension: for ".yaml"/".yml" one mapping (one document) or a
    list/tuple of mappings (several documents); for ".json" any JSON value; otherwise text.
    """

    path: str
    content: Any
    source: str

    def __post_init__(self) -> None:
        check_path(self.path)
        if not isinstance(self.source, str):
            raise TypeError(f"{self.path}: source must be a string, got {self.source!r}")
