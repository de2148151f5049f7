"""Load a policies file with the same located diagnostics as ml.yaml, and check each rule's
path against the resolved project's model and its value against its operator."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ...schema.policies import CHANGE_OPERATORS, PolicyFile
from .. import ir
from ..diagnostics import Diagnostics
from ..load import Document, load_yaml_file
from ..validate import _report, locate

UNKNOWN_POLICY_PATH = "MLC511"
BAD_POLICY_VALUE = "MLC512"
NO_POLICY_FILE = "MLC513"
_ORDERED = ("<", "<=", ">", ">=")


def load_policies(root: Path, name: str, project_doc: Document,
                  diags: Diagnostics) -> list[ir.UserPolicy] | None:
    """The rules of the file `name` (relative to the project), or None after diagnostics."""
    shown = Path(name).as_posix()
    if not (root / name).is_file():
        diags.error(NO_POLICY_FILE, f"the policies file `{shown}` does not exist",
                    span=locate(project_doc, ("policies",)), path=("policies",),
                    help="give the path relative to the folder of ml.yaml, or remove "
                    "`policies:`")
        return None
    doc = load_yaml_file(root / name, shown, diags)
    if doc is None:
        return None
    try:
        parsed = PolicyFile.model_validate(doc.data, strict=True)
    except ValidationError as exc:
        _report(doc, exc, diags)
        return None
    out = []
    ok = True
    for i, rule in enumerate(parsed.policies):
        ok = _check(doc, i, rule, diags) and ok
        span = locate(doc, ("policies", i, "name"))
        out.append(ir.UserPolicy(
            name=rule.name, path=rule.path, on=rule.on, operator=rule.operator,
            value=rule.value,
            environments=rule.environments, severity=rule.severity, message=rule.message,
            origin=ir.Origin(file=shown, line=span.line if span else 0,
                             path=f"policies[{i}]")))
    return out if ok else None


def _check(doc: Document, i: int, rule: Any, diags: Diagnostics) -> bool:
    where = ("policies", i)
    problem = object_path_problem(rule.path) if rule.on == "objects" else \
        path_problem(rule.path)
    if problem:
        diags.error(UNKNOWN_POLICY_PATH, f"policy `{rule.name}`: {problem}", path=(*where, "path"),
                    span=locate(doc, (*where, "path")),
                    help="name fields as the resolved project does (`project.json` in "
                    "core/config.yaml), "
                    "e.g. `endpoints.*.autoscaling.min_replicas`")
        return False
    value, op = rule.value, rule.operator
    wrong = None
    if op in ("exists", "absent") or op in CHANGE_OPERATORS:
        wrong = None if value is None else f"`{op}` takes no value"
    elif op in ("in", "notIn"):
        wrong = None if isinstance(value, list) else f"`{op}` needs a list of values"
    elif op in _ORDERED:
        wrong = None if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else f"`{op}` compares numbers"
    elif value is None or isinstance(value, list):
        wrong = f"`{op}` needs one value"
    if wrong:
        diags.error(BAD_POLICY_VALUE, f"policy `{rule.name}`: {wrong}", path=(*where, "value"),
                    span=locate(doc, (*where, "value")) or locate(doc, (*where, "operator")),
                    help="see the operators in docs/policies.md")
        return False
    return True


def object_path_problem(path: str) -> str | None:
    """Why `path` cannot name a field of a rendered object (`<Kind>.<name>.<field>...`)."""
    parts = path.split(".")
    if len(parts) < 3:
        return (f"`{path}` names no field of an object: write `<Kind>.<name>.<field>...`, "
                "e.g. `Deployment.*.spec.replicas`")
    if parts[0] != "*" and not parts[0][:1].isupper():
        return f"`{parts[0]}` is not a Kubernetes kind (`Deployment`, `Service`, ... or `*`)"
    return None


def path_problem(path: str) -> str | None:
    """Why `path` names nothing in the resolved project, or None when it does."""
    node: Any = ir.ResolvedProject
    for depth, part in enumerate(path.split(".")):
        node = _strip_optional(node)
        origin = typing.get_origin(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            if part not in node.model_fields:
                known = ", ".join(sorted(node.model_fields))
                at = ".".join(path.split(".")[:depth]) or "the project"
                return f"`{part}` is not a field of {at} (fields: {known})"
            node = node.model_fields[part].annotation
        elif origin is dict:
            node = typing.get_args(node)[1]
        elif origin is list:
            if part != "*" and not part.isdigit():
                return f"`{part}` indexes a list: use `*` or a number"
            node = typing.get_args(node)[0]
        else:
            return f"`{part}` goes inside a value that has no fields"
    return None


def _strip_optional(node: Any) -> Any:
    if typing.get_origin(node) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(node) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return node
