"""The JSON Schema of ml.yaml, for editors (`# yaml-language-server: $schema=...`).

Generated from the pydantic models; `ml.schema.json` at the repository root is this text,
checked in, and a test fails when the two differ.
"""

from __future__ import annotations

import json

from pydantic.json_schema import GenerateJsonSchema

from .project import API_VERSION, Project

SCHEMA_ID = "https://mlc.dev/schemas/v1/ml.schema.json"


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
