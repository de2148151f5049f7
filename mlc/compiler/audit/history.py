"""An environment's history file: `OUT/<env>/.mlc-history.jsonl`, one record per apply.

One JSON object a line, oldest first, so that git shows an apply as one added line. Each
record carries the sha256 of the line before it (`prev_sha256`): a record edited or removed
by hand breaks the chain, and `mlc history` says where. The chain shows tampering within
the file; what makes it trustworthy is that the file is committed with the tree it
describes, and git keeps who committed it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..reading import ReadRefused, read_regular_file

HISTORY_NAME = ".mlc-history.jsonl"
RECORD_FORMAT = 1
MAX_HISTORY_BYTES = 16 * 1024 * 1024  # about 20,000 applies; then rotate (docs/governance.md)


class HistoryUnreadable(OSError):
    """The history file cannot be appended to: not a regular file, too large, not text."""


@dataclass(frozen=True)
class Entry:
    line: int  # 1-based
    record: dict[str, Any] | None  # None: the line is not a record
    problem: str | None  # why the chain breaks here, if it does


def check_history(tree: Path) -> str | None:
    """Why the history file in `tree` cannot be appended to, or None when it can."""
    try:
        _read(tree)
    except HistoryUnreadable as exc:
        return exc.strerror
    return None


def appended(tree: Path, record: Mapping[str, Any], *, tree_sha256: str) -> bytes:
    """The history file of `tree` with one more record: `record`, numbered, chained to the
    last line, and naming the index of the new tree (so a record always says which tree it
    describes, and a tree that does not match its last record was not written by apply)."""
    data = _read(tree)
    lines = data.splitlines()
    prev = hashlib.sha256(lines[-1]).hexdigest() if lines else None
    full = {**record, "format": RECORD_FORMAT, "seq": len(lines) + 1, "prev_sha256": prev,
            "tree_sha256": tree_sha256}
    line = json.dumps(full, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return data + line.encode("utf-8") + b"\n"


def read_records(tree: Path) -> list[Entry]:
    """Every line of the history file in `tree`, checked against the chain; [] if none."""
    data = _read(tree)
    entries, prev = [], None
    for number, raw in enumerate(data.splitlines(), 1):
        record, problem = None, None
        try:
            value = json.loads(raw.decode("utf-8"))
            record = value if isinstance(value, dict) else None
        except (ValueError, RecursionError):
            pass
        if record is None:
            problem = "not a record (edited by hand?)"
        elif record.get("prev_sha256") != prev:
            problem = ("the line before it was edited or removed" if number > 1
                       else "records before it were removed")
        elif record.get("seq") != number:
            problem = f"numbered {record.get('seq')!r}, not {number}"
        entries.append(Entry(number, record, problem))
        prev = hashlib.sha256(raw).hexdigest()
    return entries


def _read(tree: Path) -> bytes:
    path = tree / HISTORY_NAME
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return b""
    if not stat.S_ISREG(mode):
        # a link could point anywhere; what it names is not this environment's history
        raise HistoryUnreadable(0, f"{path} is not a regular file")
    try:
        data = read_regular_file(path, MAX_HISTORY_BYTES)
    except ReadRefused as exc:
        raise HistoryUnreadable(0, f"{path} cannot be read: {exc.detail}") from None
    if len(data) > MAX_HISTORY_BYTES:
        raise HistoryUnreadable(0, f"{path} is larger than {MAX_HISTORY_BYTES >> 20} MiB")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise HistoryUnreadable(0, f"{path} is not UTF-8 text") from None
    return data
