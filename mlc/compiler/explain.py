"""explain: a value of one environment, defaults included, and which file and line set it.

A key that the environment's overlay removed with `$patch: delete` is shown as deleted,
with the overlay's line, and (where ml.yaml has a default for it) the default it falls back
to. A path that is not ml.yaml's but the resolved project's (`pipelines`, `endpoints`, the
names docs/training-contract.md uses) shows the resolved value, whose origin is mlc itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .diagnostics import Diagnostics, FieldPath, Span, did_you_mean, format_path
from .load import load_yaml_file
from .overlay import PATCH
from .pipeline import ENVIRONMENTS_DIR, check_environment, load_environment, select_environments
from .validate import validate_document

NO_SUCH_PATH = "MLC016"
# What each rollout strategy reads (resolve/delivery.py refuses the rest, but for `rolling`,
# which ignores all on purpose): what the strategy never reads is not shown, defaults or a base
# file's values that an environment's `strategy: rolling` switched off, unless asked for by
# its path.
ROLLOUT_READS = {
    "rolling": (),
    "canary": ("steps", "gates", "shadowFirst"),
    "blueGreen": ("gates", "autoPromote"),
    "shadow": ("shadow",),
    "ab": ("variants", "assignment", "router", "verdict"),
}


def explain(root: Path, env: str, dotted: str, diags: Diagnostics, *, fmt: str = "text"
            ) -> str | None:
    select_environments(root, [env], diags)
    loaded = load_environment(root, env, diags)
    project = validate_document(loaded.document, diags) if loaded else None
    if project is None or loaded is None:
        return None
    value: Any = project.model_dump(by_alias=True, mode="json")
    path = _parse(dotted)
    deleted = _deleted(root, env)
    resolved = False
    if path and isinstance(value, dict) and path[0] not in value:
        ir = check_environment(root, env, Diagnostics())  # its diagnostics: validate's
        dumped = ir.model_dump(mode="json") if ir is not None else {}
        if path[0] in dumped:
            value, resolved = dumped, True
    if not resolved:
        # an A/B rollout reads `gates` only where they are set: its guardrails
        guarded = {n for n, e in project.serving.items()
                   if e.rollout.strategy == "ab" and "gates" in e.rollout.model_fields_set}
        _drop_unread(value, path, guarded)
    for depth, part in enumerate(path):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        elif path[:depth + 1] in deleted:
            value = _Deleted()
            break
        else:
            options = [str(k) for k in value] if isinstance(value, dict) else []
            diags.error(NO_SUCH_PATH, f"`{format_path(path[:depth + 1])}` is not set in "
                        f"environment `{env}`, and has no default",
                        help=did_you_mean(str(part), options))
            return None
    rows = []
    for leaf_path, leaf in _leaves(value, path):
        if resolved:
            origin = "resolved by mlc"
        else:
            span = loaded.document.spans.get(leaf_path)
            origin = str(span) if span else "default"
            gone = next((deleted[leaf_path[:n]] for n in range(len(leaf_path), 0, -1)
                         if leaf_path[:n] in deleted), None)
            if gone is not None and not span:
                origin = f"deleted at {gone}" + ("" if isinstance(leaf, _Deleted)
                                                 else "; the default")
        rows.append((format_path(leaf_path), None if isinstance(leaf, _Deleted) else leaf,
                     origin))
    if isinstance(value, _Deleted):
        value = None
    if fmt == "json":
        return json.dumps({"environment": env, "path": format_path(path), "value": value,
                           "origins": {p: o for p, _, o in rows}}, indent=2,
                          sort_keys=True) + "\n"
    width = max((len(p) for p, _, _ in rows), default=0)
    return "".join(f"{p.ljust(width)}  {json.dumps(v)}  ({o})\n" for p, v, o in rows) or "{}\n"


class _Deleted:
    """A key that `$patch: delete` removed and that has no default."""


def _deleted(root: Path, env: str) -> dict[FieldPath, Span]:
    """The keys the environment's overlay deletes, and where; named list items are left
    out (their path in the merged project is an index, not the name)."""
    name = f"{ENVIRONMENTS_DIR}/{env}.yaml"
    if not (root / name).is_file():
        return {}
    overlay = load_yaml_file(root / name, name, Diagnostics(), allow_empty=True, root=root)
    out: dict[FieldPath, Span] = {}
    stack: list[tuple[FieldPath, Any]] = [((), overlay.data if overlay else None)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        if node.get(PATCH) == "delete" and path:
            out[path] = overlay.spans.get(path) or Span(name)
            continue
        stack += [((*path, key), child) for key, child in node.items() if key != PATCH]
    return out


def _parse(dotted: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for piece in filter(None, dotted.replace("]", "").replace("[", ".").split(".")):
        parts.append(int(piece) if piece.isdigit() else piece)
    return tuple(parts)


def _leaves(value: Any, path: tuple) -> Any:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            yield from _leaves(value[key], (*path, key))
    elif isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield path, value


def _drop_unread(dump: dict[str, Any], asked: tuple, guarded: set[str]) -> None:
    """Leave out of each endpoint's `rollout` what its strategy never reads (the `gates` of
    an A/B rollout unless set: its guardrails, `guarded`)."""
    for name, endpoint in (dump.get("serving") or {}).items():
        rollout = endpoint.get("rollout")
        if not isinstance(rollout, dict):
            continue
        reads = ROLLOUT_READS.get(rollout.get("strategy"), ())
        if name in guarded:
            reads = (*reads, "gates")
        for key in sorted(rollout):
            where = ("serving", name, "rollout", key)
            if key != "strategy" and key not in reads and asked[:len(where)] != where:
                del rollout[key]
