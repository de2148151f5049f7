"""Validate prometheus-operator objects against the upstream CRD schemas, strictly.

The CRDs in shared/schemas/prometheus-operator are the API server's own schemas. The API
server prunes (or, with `kubectl apply --validate=strict`, rejects) fields a schema does not
declare; plain JSON Schema allows them. So every object schema that lists `properties` and
does not say `x-kubernetes-preserve-unknown-fields` is closed here (`additionalProperties:
false`), and the Kubernetes extensions that JSON Schema lacks (`int-or-string`, `nullable`)
are translated.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas"
FOLDER = SCHEMAS / "prometheus-operator"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml: the CRDs are large
    """PyYAML reads YAML 1.1, whose `=` value tag the CRDs' enum of match types trips over."""


_Loader.add_constructor("tag:yaml.org,2002:value",
                        lambda loader, node: loader.construct_scalar(node))


def available() -> bool:
    return FOLDER.is_dir()


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.Draft7Validator | None:
    group, _, version = api_version.partition("/")
    # Files are named after the CRD: <group>_<plural>.yaml, and every plural here is kind + s.
    path = FOLDER / f"{group}_{kind.lower()}s.yaml"
    if not path.is_file():
        return None
    crd = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    if crd["spec"]["group"] != group or crd["spec"]["names"]["kind"] != kind:
        return None
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))
    return None


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for value in node.values():
            visit(value)

    visit(schema)
    return schema


def errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of `obj`, as `path: message`; [] when it is valid."""
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    validator = _validator(*key)
    if validator is None:
        return [f"no CRD for {key} in {FOLDER}"]
    out = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
           for e in validator.iter_errors(obj)]
    meta = obj.get("metadata", {})
    for field in ("labels", "annotations"):
        for k, v in (meta.get(field) or {}).items():
            if not isinstance(v, str):
                out.append(f"metadata/{field}/{k}: {v!r} is not a string")
    return sorted(out)
