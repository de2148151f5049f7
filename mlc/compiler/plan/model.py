"""What a plan is: per environment, the actions (add, change, delete) and the risks.

The JSON form (`Plan.to_json`) is a documented, stable interface for other tools:
docs/plan-json-schema.md describes every field; change both together, and bump
`FORMAT_VERSION` for anything that is not a pure addition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .diff import MISSING, FieldChange, path_to_json
from .objects import Key

FORMAT_VERSION = 1
ADD, CHANGE, DELETE = "add", "change", "delete"
HIGH, MEDIUM = "high", "medium"


@dataclass(frozen=True)
class Action:
    op: str  # add | change | delete
    key: Key
    file: str  # where it will be (add, change) or was (delete)
    old_file: str | None = None  # set when the object moves to another file
    changes: tuple[FieldChange, ...] = ()
    note: str | None = None  # e.g. only comments or layout change
    # Both sides, for the risk checks; not part of the JSON plan.
    old: Any = field(default=None, compare=False, repr=False)
    new: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        k = self.key
        obj = k.type == "object"
        return {
            "action": self.op,
            "type": k.type,
            "id": k.id,
            "api_version": k.api_version if obj else None,
            "kind": k.obj_kind if obj else None,
            "namespace": (k.namespace or None) if obj else None,
            "name": k.name if obj else None,
            "file": self.file,
            "old_file": self.old_file,
            "note": self.note,
            "changes": [_change_json(c) for c in self.changes],
        }


def _change_json(c: FieldChange) -> dict[str, Any]:
    out: dict[str, Any] = {"op": c.op, "path": path_to_json(c.path), "path_text": c.path_text}
    if c.old is not MISSING:
        out["old"] = c.old
    if c.new is not MISSING:
        out["new"] = c.new
    return out


@dataclass(frozen=True)
class Risk:
    code: str  # stable, documented in docs/plan-and-apply.md
    severity: str  # high | medium
    message: str
    subject: str | None = None  # an action's id, or an ml.yaml path such as serving.fraud-api
    blocks_apply: bool = False  # `mlc apply` refuses while this risk stands...
    override: str | None = None  # ...unless given this flag (None: no flag overrides it)
    accepted: str | None = None  # a policy violation let through on purpose: why, and where

    def sort_key(self) -> tuple:
        return (self.severity != HIGH, self.code, self.subject or "", self.message)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "subject": self.subject, "blocks_apply": self.blocks_apply,
                "override": self.override, "accepted": self.accepted}


@dataclass
class EnvPlan:
    env: str
    location: str  # what was compared with, as shown: `deploy/prod`, `origin/main:deploy/prod`
    actions: list[Action]
    risks: list[Risk]
    files: dict[str, bytes]  # the new tree (what apply writes)
    notes: list[str] = field(default_factory=list)  # e.g. a risk check that could not run
    cost: dict[str, Any] | None = None  # cost/change.py plan_cost: monthly cost and delta
    # layers.SourceChange: the project's values that differ from the base commit's, each
    # with the layer that set it (only with a git base)
    sources: list[Any] = field(default_factory=list)

    def count(self, op: str) -> int:
        return sum(1 for a in self.actions if a.op == op)

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def summary(self) -> str:
        if not self.actions:
            return "No changes."
        return (f"Plan: {self.count(ADD)} to add, {self.count(CHANGE)} to change, "
                f"{self.count(DELETE)} to delete.")

    def blocking(self, *, allow_delete: bool, force: bool) -> list[Risk]:
        granted = {"--allow-delete": allow_delete, "--force": force}
        return [r for r in self.risks if r.blocks_apply and not granted.get(r.override or "")]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.env,
            "compared_with": self.location,
            "changes": self.has_changes,
            "summary": {"add": self.count(ADD), "change": self.count(CHANGE),
                        "delete": self.count(DELETE), "risks": len(self.risks)},
            "summary_text": self.summary(),
            "risks": [r.to_json() for r in self.risks],
            "actions": [a.to_json() for a in self.actions],
            "notes": list(self.notes),
            "cost": self.cost,
            "source_changes": [c.to_json() for c in self.sources],
        }


@dataclass
class Plan:
    base: dict[str, Any]  # {"type": "directory", "out": ...} or {"type": "git", "ref", ...}
    environments: list[EnvPlan]

    @property
    def has_changes(self) -> bool:
        return any(e.has_changes for e in self.environments)

    def to_json(self) -> dict[str, Any]:
        from mlc import __version__

        envs = self.environments
        return {
            "format_version": FORMAT_VERSION,
            "mlc_version": __version__,
            "base": dict(self.base),
            "changes": self.has_changes,
            "summary": {"add": sum(e.count(ADD) for e in envs),
                        "change": sum(e.count(CHANGE) for e in envs),
                        "delete": sum(e.count(DELETE) for e in envs),
                        "risks": sum(len(e.risks) for e in envs)},
            "environments": [e.to_json() for e in envs],
        }
