"""`mlc history [ENV]`: the applies recorded in the output tree, newest first.

A broken chain (a record edited, removed or added by hand) is a warning at the line where
it breaks (MLC515); the records are still listed, since hiding them would hide the evidence.
A record whose tree is not the tree on disk (`tree_sha256` against `.mlc-index.json`) is
noted: someone compiled or edited the tree after the last apply.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostics, Span
from ..write import INDEX_NAME
from .history import HISTORY_NAME, HistoryUnreadable, read_records
from .record import HISTORY_UNREADABLE

CHAIN_BROKEN = "MLC515"
UNKNOWN_HISTORY = "MLC516"


def history(out_dir: Path, env: str | None, *, fmt: str, diags: Diagnostics) -> str | None:
    envs = [env] if env else _environments(out_dir)
    if env and not os.path.isdir(out_dir / env):
        known = _environments(out_dir)
        diags.error(UNKNOWN_HISTORY, f"no environment `{env}` in {out_dir}",
                    span=Span(str(out_dir / env)),
                    help=f"known: {', '.join(known)}" if known else
                    "apply first (`mlc apply`), or point at the output folder with --out")
        return None
    result: dict[str, Any] = {}
    for name in envs:
        tree = out_dir / name
        try:
            entries = read_records(tree)
        except HistoryUnreadable as exc:
            diags.error(HISTORY_UNREADABLE, f"{name}: {exc.strerror}",
                        span=Span(str(tree / HISTORY_NAME)), help="restore it from git")
            continue
        for e in entries:
            if e.problem:
                diags.warning(CHAIN_BROKEN, f"{name}: the audit history breaks at line "
                              f"{e.line}: {e.problem}",
                              span=Span(str(tree / HISTORY_NAME), e.line, 1),
                              help="restore the file from git; `git log -p` on it shows "
                              "who changed it", excerpt=False)
        records = [dict(e.record, line=e.line, verified=e.problem is None)
                   for e in entries if e.record is not None]
        result[name] = {"records": records[::-1], "tree_matches_last": _matches(tree, records)}
    if fmt == "json":
        return json.dumps({"environments": result}, indent=2, sort_keys=True,
                          ensure_ascii=False) + "\n"
    return "".join(_text(name, result[name]) for name in sorted(result)) or \
        f"no applies recorded in {out_dir}\n"


def _environments(out_dir: Path) -> list[str]:
    if not out_dir.is_dir():
        return []
    return sorted(p.name for p in out_dir.iterdir()
                  if not p.name.startswith(".") and p.is_dir() and not p.is_symlink()
                  and (p / INDEX_NAME).is_file())


def _matches(tree: Path, records: list[dict[str, Any]]) -> bool | None:
    if not records:
        return None
    try:
        index = hashlib.sha256((tree / INDEX_NAME).read_bytes()).hexdigest()
    except OSError:
        return False
    return records[-1].get("tree_sha256") == index


def _text(env: str, found: dict[str, Any]) -> str:
    records = found["records"]
    if not records:
        return f"{env}: no applies recorded\n"
    lines = [f"{env}: {len(records)} appl{'y' if len(records) == 1 else 'ies'} recorded"
             + ("" if found["tree_matches_last"] else
                " (the tree changed since the last apply: compiled or edited by hand)")]
    for r in records:
        actor = r.get("actor") or {}
        git = r.get("git")
        if isinstance(git, dict):
            state = "dirty" if git.get("dirty") else "clean"
            commit = f"commit {str(git.get('commit'))[:12]} ({state}) by {git.get('author')}"
        else:
            commit = "not a git checkout"
        s = r.get("summary") or {}
        lines.append(f"  #{r.get('seq')}  {r.get('applied_at')}  {actor.get('name')} "
                     f"({actor.get('source')})" + ("" if r["verified"] else "  [UNVERIFIED]"))
        lines.append(f"      {commit}")
        if isinstance(git, dict) and not git.get("dirty"):
            # CI commits the tree after applying: at the recorded commit, the committed tree
            # is the one this apply replaced (docs/governance.md)
            sha = str(git.get("commit"))
            lines.append(f"      explain: git checkout {sha[:12]} && mlc plan --base-ref "
                         f"{sha[:12]} --env {env}")
        plan = f"plan {str(r.get('plan_sha256'))[:12]}"
        if r.get("saved_plan"):
            plan += f" (saved: {r['saved_plan']})"
        lines.append(f"      {plan}: +{s.get('add', 0)} ~{s.get('change', 0)} "
                     f"-{s.get('delete', 0)}")
        if r.get("ci_run"):
            lines.append(f"      run {r['ci_run']}")
        for a in r.get("accepted_risks") or []:
            lines.append(f"      accepted {a.get('code')} {a.get('subject')}: {a.get('reason')}")
    return "".join(_printable(line) + "\n" for line in lines)


def _printable(text: str) -> str:
    # actor names come from the environment and commit data from git: no terminal escapes
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
