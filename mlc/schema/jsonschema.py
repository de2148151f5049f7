"""The JSON Schemas of ml.yaml and of its overlays, for editors
(`# yaml-language-server: $schema=...`, or `.vscode/settings.json`'s `yaml.schemas`).

Generated from the pydantic models; `ml.schema.json` and `ml.overlay.schema.json` at the
repository root are these texts, checked in, and a test fails when they differ.
"""

from __future__ import annotations

import copy
import json

from pydantic.json_schema import GenerateJsonSchema

from .project import API_VERSION, Project

SCHEMA_ID = "https://mlc.dev/schemas/v1/ml.schema.json"
OVERLAY_SCHEMA_ID = "https://mlc.dev/schemas/v1/ml.overlay.schema.json"


class _Generator(GenerateJsonSchema):
    def field_title_should_be_set(self, schema) -> bool:
        # pydantic leaves the title off a field that is a section ($ref); an editor's hover
        # over `rollout:` should still read "Rollout", not nothing
        return True

    def handle_ref_overrides(self, json_schema):
        # ... nor when it equals the section's own title: keep it on the field
        out = super().handle_ref_overrides(json_schema)
        if "title" in json_schema and "title" not in out:
            out = {**out, "title": json_schema["title"]}
        return out


def schema() -> dict:
    out = Project.model_json_schema(by_alias=True, mode="validation",
                                    schema_generator=_Generator)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["$id"] = SCHEMA_ID
    out["title"] = f"ml.yaml ({API_VERSION})"
    out["description"] = "An ML system, compiled by mlc into Argo, Kubernetes, Feast and " \
                         "Prometheus configuration."
    return _key_names(out)


def _key_names(node):
    """pydantic writes a dict whose keys have a pattern as `patternProperties`, under which a
    key that misses the pattern is let through unchecked; `propertyNames` refuses it."""
    if isinstance(node, list):
        return [_key_names(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _key_names(value) for key, value in node.items()}
    patterns = node.get("patternProperties")
    if patterns and len(patterns) == 1 and "additionalProperties" not in node:
        (pattern, values), = patterns.items()
        del node["patternProperties"]
        node["additionalProperties"] = values
        node.setdefault("propertyNames", {})["pattern"] = pattern
    return node


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# `key: {$patch: delete}` removes a key whatever its type (compiler/overlay.py, rule 5).
_DELETE = {
    "type": "object",
    "title": "Delete",
    "description": "Removes this key (or this named list item) from the merged project.",
    "properties": {"$patch": {"const": "delete"}},
    "required": ["$patch"],
    "additionalProperties": False,
}
_PATCH = {
    "title": "Patch directive",
    "description": "`delete` removes this mapping from the merged project; `replace` uses "
                   "it as written instead of merging it key by key into ml.yaml's.",
    "enum": ["delete", "replace"],
}


def overlay_schema() -> dict:
    """The schema of `environments/<env>.yaml`: ml.yaml's with every field optional, any
    mapping open to `$patch: delete|replace`, and any value replaceable by a deletion."""
    out = copy.deepcopy(schema())
    out = _optional(out)
    for definition in out["$defs"].values():
        _patchable(definition)
    _patchable(out, top=True)
    out["$defs"]["PatchDelete"] = _DELETE
    out["$id"] = OVERLAY_SCHEMA_ID
    out["title"] = f"environments/<env>.yaml ({API_VERSION})"
    out["description"] = "An environment's overlay, merged over ml.yaml: every key optional, " \
                         "`$patch: delete` to remove one, `$patch: replace` to replace a " \
                         "mapping whole (docs/language.md)."
    return out


def _optional(node):
    """No `required`; a discriminated union becomes `anyOf`, since an overlay of a source may
    leave out the `type` that tells its kind."""
    if isinstance(node, list):
        return [_optional(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: _optional(v) for k, v in node.items() if k not in ("required", "discriminator")}
    if "oneOf" in node:
        node["anyOf"] = node.pop("oneOf")
    return node


def _deletable(prop: dict) -> dict:
    return {"anyOf": [{k: v for k, v in prop.items() if k not in _ANNOTATIONS},
                      {"$ref": "#/$defs/PatchDelete"}],
            **{k: v for k, v in prop.items() if k in _ANNOTATIONS}}


# Kept on the property itself, for the editor's hover and completion.
_ANNOTATIONS = ("title", "description", "default", "examples")


def _patchable(definition: dict, top: bool = False) -> None:
    props = definition.get("properties")
    if props is None:
        return
    for key, prop in list(props.items()):
        props[key] = _deletable(prop)
        values = prop.get("additionalProperties")
        if isinstance(values, dict) and values:  # a map of named things: delete one of them
            target = props[key]["anyOf"][0]
            target["additionalProperties"] = {"anyOf": [values, {"$ref": "#/$defs/PatchDelete"}]}
    # at the top level only `replace` (MLC011): the file itself cannot be deleted
    props["$patch"] = {**_PATCH, "enum": ["replace"]} if top else _PATCH


def overlay_schema_text() -> str:
    return json.dumps(overlay_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
