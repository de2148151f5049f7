"""The rules of a policies file, over the resolved project (and the old tree's, for the
operators on a change). A rule's subject is `<rule>@<concrete path>`, which an
`acceptedRisks:` entry with code MLC510 names to let one violation through."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .builtin import USER_POLICY, Violation

_MISSING = object()


def user_violations(env: str, old: Mapping[str, Any] | None, new: Mapping[str, Any],
                    objects: Callable[[], tuple[Any, Any]] | None = None) -> list[Violation]:
    """`objects`: the old tree's and the new tree's objects as {kind: {name: object}} (the
    old None without an old tree), for the rules `on: objects`; asked for only when there
    is such a rule, since it parses every file of both trees."""
    out = []
    for rule in new.get("policies") or []:
        envs = rule.get("environments")
        if envs is not None and env not in envs:
            continue
        if rule.get("on") == "objects":
            if objects is not None:
                old_objects, new_objects = objects()
                out += list(_rule(rule, old_objects, new_objects))
            continue
        out += list(_rule(rule, old, new))
    return sorted(set(out))


def _rule(rule: Mapping[str, Any], old: Mapping[str, Any] | None,
          new: Mapping[str, Any]) -> Iterator[Violation]:
    op, expected, path = rule["operator"], rule.get("value"), rule["path"]
    blocks = rule.get("severity", "error") == "error"
    found = dict(_values(new, path.split(".")))
    if op == "exists" and not found:
        yield _violation(rule, path, "nothing is there", blocks)
    for where, value in sorted(found.items()):
        if op == "absent":
            yield _violation(rule, where, f"found {_shown(value)}", blocks)
        elif op in ("notIncreased", "notDecreased", "unchanged"):
            was = _at(old, where.split(".")) if old is not None else _MISSING
            if was is _MISSING:
                continue  # new: nothing to compare with
            bad = (op == "unchanged" and was != value) or (
                _number(was) and _number(value) and (
                    (op == "notIncreased" and value > was)
                    or (op == "notDecreased" and value < was)))
            if bad:
                yield _violation(rule, where, f"{_shown(was)} -> {_shown(value)}", blocks)
        elif op != "exists" and not _holds(op, value, expected):
            yield _violation(rule, where, f"found {_shown(value)}", blocks)


def _holds(op: str, value: Any, expected: Any) -> bool:
    if op == "==":
        return value == expected
    if op == "!=":
        return value != expected
    if op in ("in", "notIn"):
        return (value in expected) == (op == "in")
    if not _number(value):
        return False  # a null or text where a number is compared: the rule is not met
    return {"<": value < expected, "<=": value <= expected, ">": value > expected,
            ">=": value >= expected}[op]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _values(node: Any, parts: list[str], prefix: str = "") -> Iterator[tuple[str, Any]]:
    if not parts:
        yield prefix, node
        return
    head, rest = parts[0], parts[1:]
    if isinstance(node, dict):
        keys = sorted(node) if head == "*" else [head] if head in node else []
        for key in keys:
            yield from _values(node[key], rest, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        indexes = range(len(node)) if head == "*" else (
            [int(head)] if head.isdigit() and int(head) < len(node) else [])
        for i in indexes:
            yield from _values(node[i], rest, f"{prefix}.{i}" if prefix else str(i))


def _at(node: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _violation(rule: Mapping[str, Any], where: str, detail: str, blocks: bool) -> Violation:
    origin = rule.get("origin") or {}
    text = rule.get("message") or (f"`{rule['path']}` {rule['operator']}"
                                   + (f" {_shown(rule.get('value'))}"
                                      if rule.get("value") is not None else ""))
    return Violation(USER_POLICY, f"{rule['name']}@{where}",
                     f"policy `{rule['name']}` ({origin.get('file')}:{origin.get('line')}): "
                     f"{text}; at `{where}`: {detail}", blocks=blocks)
