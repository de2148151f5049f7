"""Great Expectations suites: one `expectations/<source>.json` per source with data checks.

The file is GX's own suite format (name, expectations, meta), so a data team can open it
with GX (`gx.ExpectationSuite(**json.load(f))`) and review a change of ml.yaml's checks as a
change of the suite. The validate step runs the same suite, carried in project.json
(mlc/runtime/train/expectations.py); the freshness bound is a suite parameter it fills in.
"""

from __future__ import annotations

from typing import Any

from ..ir import ResolvedProject, Source
from ..output import OutputFile

FOLDER = "expectations"


def suite_name(project: ResolvedProject, source: Source) -> str:
    return f"{project.name}.{source.name}"


def suite_document(project: ResolvedProject, source: Source) -> dict[str, Any]:
    return {
        "name": suite_name(project, source),
        "expectations": [{"type": e.type, "kwargs": e.kwargs, "meta": e.meta}
                         for e in source.expectations],
        "meta": {"mlc": {"project": project.name, "environment": project.env,
                         "source": source.name,
                         "declared_at": source.origin.annotation()}},
    }


def emit(project: ResolvedProject) -> list[OutputFile]:
    return [OutputFile(f"{FOLDER}/{name}.json", suite_document(project, source), project.source)
            for name, source in sorted(project.sources.items()) if source.expectations]
