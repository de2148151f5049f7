"""Validate generated objects against the upstream schemas in ../shared/schemas, strictly.

`kubectl apply --validate=strict` refuses fields that a CRD does not declare; a plain JSON
Schema check would not, because OpenAPI schemas leave `additionalProperties` open. `tighten`
closes every object schema that lists its properties (unless it says
`x-kubernetes-preserve-unknown-fields`), so that an unknown or misspelt field is an error here
too. Works for CRD files (pick the version) and for plain JSON Schema files with definitions
(Argo Events publishes one). Tests that call these skip, with the reason, when shared/ is absent.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas"
_OPEN = ("additionalProperties", "x-kubernetes-preserve-unknown-fields")


def require_schemas() -> Path:
    if not SCHEMAS.is_dir():
        pytest.skip(f"upstream schemas not found at {SCHEMAS} (the repository is checked out "
                    "without shared/ beside it)")
    return SCHEMAS


def tighten(schema: Any) -> Any:
    """A copy of `schema` in which every object with `properties` allows no other keys."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and not any(k in node for k in _OPEN):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@cache
def _load(relpath: str) -> Any:
    path = require_schemas() / relpath
    if path.suffix == ".json":
        return json.loads(path.read_text("utf-8"))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are megabytes of YAML
    return yaml.load(path.read_text("utf-8"), Loader=loader)


def crd_schema(relpath: str, version: str | None = None) -> dict[str, Any]:
    """The openAPIV3Schema of one version of a CRD (default: the storage version)."""
    crd = _load(relpath)
    versions = crd["spec"]["versions"]
    chosen = [v for v in versions if (v["name"] == version if version else v.get("storage"))]
    if not chosen:
        raise KeyError(f"{relpath} has no version {version!r}: "
                       f"{[v['name'] for v in versions]}")
    return chosen[0]["schema"]["openAPIV3Schema"]


@cache
def crd_validator(relpath: str, version: str | None = None) -> jsonschema.Validator:
    schema = tighten(crd_schema(relpath, version))
    return jsonschema.Draft7Validator(schema)


@cache
def definition_validator(relpath: str, definition: str) -> jsonschema.Validator:
    """A validator for one definition of a JSON Schema file with `definitions`."""
    document = _load(relpath)
    schema = {"$ref": f"#/definitions/{definition}",
              "definitions": tighten(document["definitions"])}
    return jsonschema.Draft7Validator(schema)


def errors(validator: jsonschema.Validator, obj: Any) -> list[str]:
    """Every violation, as `path: message` lines (empty when the object is valid)."""
    out = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        out.append(f"{where}: {error.message}")
    return out


def check_crd(obj: Any, relpath: str, version: str | None = None) -> list[str]:
    return errors(crd_validator(relpath, version), obj)


def check_definition(obj: Any, relpath: str, definition: str) -> list[str]:
    return errors(definition_validator(relpath, definition), obj)
