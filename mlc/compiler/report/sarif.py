"""SARIF 2.1.0 (OASIS), the format code-scanning tools read: one run of the `mlc` tool, one
rule per diagnostic code, one result per diagnostic or plan risk."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from mlc import __version__

from .findings import Finding

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/" \
               "sarif-schema-2.1.0.json"
DOCS = "docs/diagnostics.md"


def document(findings: Iterable[Finding]) -> dict[str, Any]:
    findings = list(findings)
    codes = sorted({f.code for f in findings})
    index = {code: i for i, code in enumerate(codes)}
    rules = [{"id": code, "name": code,
              "shortDescription": {"text": f"mlc diagnostic {code}"},
              "help": {"text": f"See {code} in {DOCS}: what it means, why, and the fix."}}
             for code in codes]
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {"name": "mlc", "version": __version__,
                                "semanticVersion": __version__, "rules": rules}},
            "columnKind": "unicodeCodePoints",
            "results": [_result(f, index[f.code]) for f in findings],
        }],
    }


def _result(f: Finding, rule_index: int) -> dict[str, Any]:
    text = "\n".join([f.message, *f.details])
    out: dict[str, Any] = {"ruleId": f.code, "ruleIndex": rule_index, "level": f.level,
                           "message": {"text": text}}
    if f.file:
        location: dict[str, Any] = {"artifactLocation": {"uri": quote(f.file)}}
        # a finding without a line (a plan risk) is about the whole file: its first line
        region = {"startLine": f.line or 1}
        if f.line and f.column:
            region["startColumn"] = f.column
            if f.end_column > f.column:
                region["endColumn"] = f.end_column
        location["region"] = region
        out["locations"] = [{"physicalLocation": location}]
    return out


def render(findings: Iterable[Finding]) -> str:
    return json.dumps(document(findings), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
