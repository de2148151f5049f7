"""Build a plan: the new output of each environment against the tree it would replace.

    compile (pipeline.py) -> read the old trees (disk or git ref) -> split both into objects
    -> diff object by object, field by field -> risks -> EnvPlan per environment

`plan` straight after `apply` is empty by construction: apply writes exactly the bytes that
were compiled, and files with equal bytes are equal items.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..cost import budget_violations, plan_cost
from ..diagnostics import Diagnostics
from ..pipeline import Compiled, check_environment
from ..policy import policy_risks, user_violations
from . import risks as r
from .diff import _same, diff_values
from .model import ADD, CHANGE, DELETE, Action, EnvPlan, Plan
from .objects import Item, Key, split_file, split_tree
from .trees import GitBase, Tree, read_disk_tree, read_git_tree
from .weakening import guard_notes, weakening_risks

TEXT_ONLY = "only comments or layout change"
NO_PROJECT_JSON = ("the old tree has no runtime ConfigMap with project.json, so the checks "
                   "that compare the two projects (feature views in use, GPUs, input schemas) "
                   "did not run")


def environments_to_read(envs: Iterable[str], all_envs: Iterable[str]) -> list[str]:
    """The selected environments, plus the staging environment of a selected prod."""
    envs = list(envs)
    extra = [s for e in envs if (s := r.staging_of(e, all_envs)) and s not in envs]
    return list(dict.fromkeys(envs + extra))


def read_trees(out_dir: Path, envs: Iterable[str], base: GitBase | None = None,
               shown_out: str | None = None) -> dict[str, Tree]:
    """The old tree of every environment; hold write.output_lock around this for disk trees."""
    trees = {}
    for env in envs:
        if base is not None:
            trees[env] = read_git_tree(base, out_dir, env)
        else:
            trees[env] = read_disk_tree(out_dir, env, f"{shown_out or out_dir}/{env}")
    return trees


def build_plan(root: Path, compiled: list[Compiled], trees: Mapping[str, Tree],
               base: dict[str, Any]) -> Plan:
    by_env = {c.env: c for c in compiled}
    all_envs = compiled[0].project.environments if compiled else []
    plans = []
    for c in compiled:
        new_ir = c.project.model_dump(mode="json")
        staging_env = r.staging_of(c.env, all_envs)
        staging_ir = _staging_ir(root, staging_env, trees, by_env) if staging_env else None
        plans.append(plan_environment(c.env, c.files, trees[c.env], new_ir,
                                      staging_env=staging_env, staging_ir=staging_ir,
                                      secret_facts=c.facts))
    return Plan(base=base, environments=plans)


def _staging_ir(root: Path, env: str, trees: Mapping[str, Tree],
                compiled: Mapping[str, Compiled]) -> dict[str, Any] | None:
    # What staging runs now (its deployed tree) is what prod may take; a staging that was
    # never applied falls back to what it would run after this change.
    tree = trees.get(env)
    if tree is not None and tree.exists:
        deployed = runtime_ir(tree.ours())
        if deployed is not None:
            return deployed
    if env in compiled:
        return compiled[env].project.model_dump(mode="json")
    project = check_environment(root, env, Diagnostics())
    return project.model_dump(mode="json") if project else None


def plan_environment(env: str, new_files: Mapping[str, bytes], old: Tree,
                     new_ir: Mapping[str, Any], *, staging_env: str | None = None,
                     staging_ir: Mapping[str, Any] | None = None,
                     secret_facts: Mapping[str, r.SecretFacts] | None = None) -> EnvPlan:
    old_files = old.ours()
    cache: _Cache = {}
    actions = diff_trees(old_files, new_files, cache)
    notes = []
    old_ir = runtime_ir(old_files, cache) if old_files else None
    if actions and old_ir is None and old_files:
        notes.append(NO_PROJECT_JSON)
    found = [*r.tree_risks(old, new_files), *r.action_risks(actions),
             *r.ir_risks(old_ir, new_ir), *weakening_risks(old_ir, new_ir),
             *r.secret_risks(new_files, new_ir, secret_facts)]
    if actions:
        found += r.promotion_risks(env, old_ir, new_ir, staging_env, staging_ir)
    cost = plan_cost(old_ir, new_ir, old_known=not old_files)
    policies, policy_notes = policy_risks(
        old_ir, new_ir, [*budget_violations(cost), *user_violations(
            env, old_ir, new_ir, lambda: (_objects(old_files, cache) if old_files else None,
                                          _objects(new_files, cache)))])
    found += policies
    notes += policy_notes + guard_notes(new_ir)
    return EnvPlan(env=env, location=old.location, actions=actions,
                   risks=r.sort_risks(found), files=dict(new_files), notes=notes, cost=cost)


_Cache = dict[tuple[str, bytes], list[Item]]


def diff_trees(old_files: Mapping[str, bytes], new_files: Mapping[str, bytes],
               cache: _Cache | None = None) -> list[Action]:
    """Actions that turn the old files into the new ones.

    Only files whose bytes differ are parsed: a file with equal bytes holds equal objects on
    both sides, and an object that moves leaves a changed file and enters another. (An object
    that a hand edit duplicated into an unchanged file is not matched; the hand edit is
    reported as a risk anyway.)
    """
    changed = sorted(p for p in set(old_files) | set(new_files)
                     if old_files.get(p) != new_files.get(p))
    if not changed:
        return []
    cache = {} if cache is None else cache
    old_items = _items({p: old_files[p] for p in changed if p in old_files}, cache)
    new_items = _items({p: new_files[p] for p in changed if p in new_files}, cache)
    actions = []
    for key in sorted(set(old_items) | set(new_items)):
        before, after = old_items.get(key), new_items.get(key)
        if before is None:
            actions.append(Action(ADD, key, after.file, new=after.value))
        elif after is None:
            actions.append(Action(DELETE, key, before.file, old=before.value))
        elif not _same(before.value, after.value) or before.file != after.file:
            moved = before.file if before.file != after.file else None
            actions.append(Action(CHANGE, key, after.file, old_file=moved,
                                  changes=tuple(diff_values(before.value, after.value)),
                                  note=f"moves from {moved}" if moved else None,
                                  old=before.value, new=after.value))
    touched = {a.file for a in actions} | {a.old_file for a in actions if a.old_file}
    for path in changed:
        if path in old_files and path in new_files and path not in touched:
            # Equal objects in different bytes: apply still rewrites the file, so say so.
            actions.append(Action(CHANGE, Key("file", path=path), path, note=TEXT_ONLY))
    return sorted(actions, key=lambda a: (a.file, a.key))


def _parse(path: str, data: bytes, cache: _Cache) -> list[Item]:
    if (path, data) not in cache:
        cache[(path, data)] = split_file(path, data)
    return cache[(path, data)]


def _items(files: Mapping[str, bytes], cache: _Cache) -> dict[Key, Item]:
    return split_tree(files, parsed={p: _parse(p, b, cache) for p, b in files.items()})


def _objects(files: Mapping[str, bytes], cache: _Cache) -> dict[str, dict[str, Any]]:
    """A tree's objects by kind and name, the shape user policies `on: objects` read."""
    out: dict[str, dict[str, Any]] = {}
    for key, item in _items(dict(files), cache).items():
        if key.type == "object":
            out.setdefault(key.obj_kind, {})[key.name] = item.value
    return out


def runtime_ir(files: Mapping[str, bytes], cache: _Cache | None = None) -> dict[str, Any] | None:
    """The resolved project a tree runs: the `project.json` of its runtime ConfigMap."""
    cache = {} if cache is None else cache
    for path in sorted(files):
        data = files[path]
        # most files mention project.json (the steps read it); only a ConfigMap holds it
        if (not path.endswith((".yaml", ".yml")) or b"project.json" not in data
                or b"ConfigMap" not in data):
            continue
        for item in _parse(path, data, cache):
            value = item.value
            if item.key.obj_kind != "ConfigMap" or not isinstance(value, dict):
                continue
            data = value.get("data")
            text = data.get("project.json") if isinstance(data, dict) else None
            if isinstance(text, str):
                try:
                    ir = json.loads(text)
                except ValueError:
                    continue
                if isinstance(ir, dict):
                    return ir
    return None
