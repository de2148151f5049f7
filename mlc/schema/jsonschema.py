"""The JSON Schema of ml.yaml, for editors (`# yaml-language-server: $schema=...`).

Generated from the pydantic models; `ml.schema.json` at the repository root is this text,
checked in, and a test fails when the two differ.
"""

from __future__ import annotations

import json

from .project import API_VERSION, Project

SCHEMA_ID = "https://mlc.dev/schemas/v1/ml.schema.json"


def schema() -> dict:
    out = Project.model_json_schema(by_alias=True, mode="validation")
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["$id"] = SCHEMA_ID
    out["title"] = f"ml.yaml ({API_VERSION})"
    out["description"] = "An ML system, compiled by mlc into Argo, Kubernetes, Feast and " \
                         "Prometheus configuration."
    return out


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
