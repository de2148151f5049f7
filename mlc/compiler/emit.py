"""emit: run every backend over the resolved project, then the packagers over their files."""

from __future__ import annotations

from .backends import BACKENDS, PACKAGERS
from .ir import ResolvedProject
from .output import OutputFile


def emit(project: ResolvedProject) -> list[OutputFile]:
    files: list[OutputFile] = []
    for backend in BACKENDS:
        files.extend(backend(project))
    for packager in PACKAGERS:
        files.extend(packager(project, files))
    return files
