"""The audit record of one apply of one environment (before history.py numbers and chains it).

The plan's hash is the sha256 of the plan as `mlc plan --format json` prints it, with sorted
keys and no spaces: the hash a reviewer can recompute from a saved plan's `plan` field, so a
record names exactly the plan that was reviewed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlc import __version__

from ..diagnostics import Diagnostics, Span
from .history import HISTORY_NAME, check_history
from .who import collect_context

HISTORY_UNREADABLE = "MLC514"


def plan_sha256(plan_json: Mapping[str, Any]) -> str:
    text = json.dumps(plan_json, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def audit_records(out_dir: Path, envs: Sequence[str], root: Path, plan_json: Mapping[str, Any],
                  saved_plan: str | None, *, diags: Diagnostics) -> dict[str, dict[str, Any]]:
    """One record per environment; an unreadable history file is MLC514 (apply refuses:
    appending to it would lose the records it holds)."""
    for env in envs:
        problem = check_history(Path(out_dir) / env)
        if problem:
            diags.error(HISTORY_UNREADABLE, f"{env}: the audit history cannot be extended: "
                        f"{problem}", span=Span(str(Path(out_dir) / env / HISTORY_NAME)),
                        help="restore it from git (`git checkout -- <file>`), or move it "
                        "away to start a new history")
    if diags.has_errors():
        return {}
    context = collect_context(root, out_dir)
    digest = plan_sha256(plan_json)
    by_env = {e.get("name"): e for e in plan_json.get("environments", [])
              if isinstance(e, Mapping)}
    # The clock is read here, in apply only: compile's output never holds a time.
    applied_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records = {}
    for env in envs:
        planned = by_env.get(env, {})
        accepted = [{"code": r.get("code"), "subject": r.get("subject"),
                     "reason": r.get("accepted")}
                    for r in planned.get("risks", []) if r.get("accepted")]
        summary = planned.get("summary") or {}
        records[env] = {
            "env": env,
            "applied_at": applied_at,
            **context,
            "plan_sha256": digest,
            "saved_plan": saved_plan,
            "summary": {k: summary.get(k, 0) for k in ("add", "change", "delete")},
            "accepted_risks": accepted,
            "mlc_version": __version__,
        }
    return records
