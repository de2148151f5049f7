"""Backends: pure functions from the resolved project to output files (DESIGN rule 2).

They are listed here, explicitly, in the order their files are built; a backend never reads
files, the environment or the clock. `PACKAGERS` run last, over everything the backends made.
"""

from __future__ import annotations

from . import (
    argo,
    argocd,
    core,
    expectations,
    feast,
    kustomize,
    monitoring,
    network,
    secrets,
    serving,
    streams,
)

BACKENDS = (
    core.emit,
    secrets.emit,
    feast.emit,
    expectations.emit,
    monitoring.emit,
    argo.emit,
    serving.emit,
    streams.emit,
    network.emit,
    argocd.emit,
)

PACKAGERS = (
    kustomize.package,
)
