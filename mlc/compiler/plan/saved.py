"""Saved plans: `mlc plan --save PLAN`, then `mlc apply PLAN` applies exactly that plan.

A saved plan holds the new files themselves (so apply writes the very bytes that were
reviewed, whatever compiler runs it) and the sha256 of every input the plan depended on:
the project's files (ml.yaml and every environments/*.yaml) and every file of each
environment's tree as it was planned against. Apply refuses the plan when any of these
changed since (a stale plan): a plan is a promise about a specific starting point.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlc import __version__

from ..diagnostics import Diagnostics
from ..extends import chain_files
from ..load import MAX_FILE_BYTES, load_yaml_file
from ..pipeline import ENVIRONMENTS_DIR, PROJECT_FILE
from ..reading import ReadRefused, read_project_file, read_regular_file
from .model import Plan
from .trees import Tree, sha256

FORMAT = "mlc-saved-plan"
FORMAT_VERSION = 1


class BadPlanFile(Exception):
    """The file is not a saved plan this mlc can apply."""


@dataclass(frozen=True)
class SavedPlan:
    out: str  # the output folder, relative to the project folder
    sources: dict[str, str]  # project file -> sha256
    trees: dict[str, dict[str, str]]  # env -> (path -> sha256) of the tree planned against
    files: dict[str, dict[str, bytes]]  # env -> the new tree
    plan: dict[str, Any]  # the plan, as `mlc plan --format json` prints it

    @property
    def environments(self) -> list[str]:
        return list(self.files)

    def out_dir(self, root: Path) -> Path:
        return Path(self.out) if os.path.isabs(self.out) else root / self.out


def source_hashes(root: Path) -> dict[str, str]:
    """Every file a compile of `root` reads: ml.yaml, the environment overlays, the policies
    files they name, and the platform files ml.yaml extends."""
    names = [PROJECT_FILE]
    folder = root / ENVIRONMENTS_DIR
    if folder.is_dir():
        names += sorted(f"{ENVIRONMENTS_DIR}/{p.name}" for p in folder.glob("*.yaml"))
    # shared files, named on purpose and possibly outside the project: the policies files and
    # the platform files ml.yaml extends (with the policies files they name)
    policies = sorted({p for n in names for p in _policies_file(root, n)} | set(chain_files(root)))
    out = {}
    for name in [*names, *policies]:
        try:  # bounded, regular files only (reading.py); a project file must stay inside the
            # project, while a policies file is named on purpose and may be a shared one
            data = (read_regular_file(root / name, MAX_FILE_BYTES) if name in policies
                    else read_project_file(root, name, MAX_FILE_BYTES))
        except ReadRefused:
            continue  # the compile that made the plan refused it already
        out[name] = sha256(data)
    return out


def _policies_file(root: Path, name: str) -> list[str]:
    doc = load_yaml_file(root / name, name, Diagnostics(), allow_empty=True)
    named = doc.data.get("policies") if doc is not None and isinstance(doc.data, dict) else None
    return [Path(named).as_posix()] if isinstance(named, str) else []


def stored_out(root: Path, out_dir: Path) -> str:
    """The output folder relative to the project (`deploy`, `../deploy`), so that the plan
    moves between checkouts of the same layout (CI plans in one job, applies in another)."""
    return Path(os.path.relpath(Path(out_dir).resolve(), Path(root).resolve())).as_posix()


def dump(plan: Plan, root: Path, out_dir: Path, trees: Mapping[str, Tree]) -> bytes:
    files = {}
    for env in plan.environments:
        files[env.env] = {p: {"sha256": sha256(b), "text": b.decode("utf-8")}
                          for p, b in sorted(env.files.items())}
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mlc_version": __version__,
        "out": stored_out(root, out_dir),
        "inputs": {
            "sources": source_hashes(root),
            "trees": {e.env: trees[e.env].fingerprint() for e in plan.environments},
        },
        "files": files,
        "plan": plan.to_json(),
    }
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def load(path: Path) -> SavedPlan:
    try:
        doc = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise BadPlanFile(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadPlanFile(f"{path} is not a plan saved by `mlc plan --save`")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BadPlanFile(f"{path} has plan format {doc.get('format_version')!r}; this mlc "
                          f"applies format {FORMAT_VERSION}: plan again")
    try:
        inputs = doc["inputs"]
        files: dict[str, dict[str, bytes]] = {}
        for env, entries in doc["files"].items():
            files[env] = {}
            for p, entry in entries.items():
                data = entry["text"].encode("utf-8")
                if sha256(data) != entry["sha256"]:
                    raise BadPlanFile(f"{path}: {env}/{p} does not match its recorded hash; "
                                      "the plan file was changed after it was saved")
                files[env][p] = data
        saved = SavedPlan(out=str(doc["out"]), sources=dict(inputs["sources"]),
                          trees={e: dict(t) for e, t in inputs["trees"].items()},
                          files=files, plan=dict(doc["plan"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise BadPlanFile(f"{path} is damaged: missing or malformed {exc}") from None
    if set(saved.trees) != set(saved.files):
        raise BadPlanFile(f"{path} is damaged: environments do not match")
    return saved


def stale_sources(saved: SavedPlan, root: Path) -> list[str]:
    now = source_hashes(root)
    return sorted(n for n in set(now) | set(saved.sources) if now.get(n) != saved.sources.get(n))


def stale_tree(saved: SavedPlan, env: str, tree: Tree) -> list[str]:
    now, then = tree.fingerprint(), saved.trees.get(env, {})
    return sorted(p for p in set(now) | set(then) if now.get(p) != then.get(p))
