"""The compiler, pass by pass. Read `compile_project` first: it is the whole architecture.

    load -> merge environment -> validate -> resolve -> emit -> render   (write: see write.py)

Every pass adds to one `Diagnostics`; a pass that cannot go on raises `CompileFailed` with
everything collected so far. Nothing here touches the output directory: a failed compile
writes nothing, because writing happens only after every environment compiled.
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..schema import Project
from .diagnostics import CompileFailed, Diagnostics, did_you_mean
from .extends import extend, layer_source, refuse_in_overlay
from .independent_errors import independent, valid_rest
from .ir import ResolvedProject
from .load import Document, load_yaml_file
from .names import is_dns_label
from .overlay import merge_documents
from .resolve import resolve_project
from .validate import validate_document, validate_layer

if TYPE_CHECKING:
    from .output import OutputFile

PROJECT_FILE = "ml.yaml"
ENVIRONMENTS_DIR = "environments"
DEFAULT_ENVIRONMENT = "default"  # the one environment of a project without environments/
MISSING_PROJECT = "MLC001"
UNKNOWN_ENVIRONMENT = "MLC014"
BAD_ENVIRONMENT_NAME = "MLC015"
YOUNG_THRESHOLD = 50_000  # allocations between young collections while compiling (700 by default)


@dataclass(frozen=True)
class Loaded:
    """One environment after load and merge: the document with every layer's source map."""

    env: str
    document: Document
    base: Document  # ml.yaml alone, checked on its own as well (validate_layer)
    layered: bool  # an environments/<env>.yaml was merged over it
    source: str  # "ml.yaml + environments/prod.yaml"
    source_hash: str  # sha256 over those files, for lineage


@dataclass(frozen=True)
class Compiled:
    env: str
    project: ResolvedProject
    files: dict[str, bytes]  # rendered, by path relative to OUT/<env>/
    facts: Any = None  # what `facts` of compile_project took from the files' objects


def compile_project(root: Path, envs: list[str] | None, diags: Diagnostics, *,
                    facts: Callable[[list[OutputFile], dict[str, bytes]], Any] | None = None
                    ) -> list[Compiled]:
    """Every requested environment, compiled and rendered; raises CompileFailed on errors.

    `facts(outputs, rendered)`, when given, reads what a later step needs from the objects
    before they are dropped (the plan's secret check), instead of parsing the files again."""
    from .emit import emit  # backends import hera & co.: keep them off `mlc validate`'s path
    from .render import render

    with settled_between_passes() as settle:
        resolved = []
        for env in select_environments(root, envs, diags):
            resolved.append(check_environment(root, env, diags))
            settle()
        diags.raise_if_errors()  # all environments are checked before any is emitted
        compiled = []
        for p in resolved:
            if p:
                outputs = emit(p)
                files = render(outputs)
                compiled.append(Compiled(env=p.env, project=p, files=files,
                                         facts=facts(outputs, files) if facts else None))
                del outputs
                settle()
        return compiled


@contextmanager
def settled_between_passes() -> Iterator[Callable[[], None]]:
    """What a pass leaves for the next ones (documents, IRs, rendered trees) stays alive to
    the end of the command, yet Python's cyclic collector traversed all of it in every full
    collection, more often and over more objects the larger the project: a third of the CPU
    time at 1,000 models (docs/benchmarks.md). `settle()` moves every object alive between
    passes out of the collector's generations (`gc.freeze`: reference counting still frees
    them); on leaving, they are handed back, so that a long-lived process (a test run) can
    still collect their cycles.

    In here the collector does not run on its own at all: what the passes allocate is almost
    all alive until the command ends, so each young collection only traversed and promoted
    it (0.2 s of CPU at 100 models, 1.0 s at 300), and the cycles it would have freed are
    few (peak RSS +5 MB of 519 MB at 300 models; docs/benchmarks.md). It is switched back
    on, if it was on, when the passes end; from then on it collects what they left as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


@contextmanager
def fewer_young_collections() -> Iterator[None]:
    """Most objects a pass makes live until the pass ends (the documents, the dicts of the
    output), so young collections mostly promote them, and every tenth promotion round
    starts a full collection: collect the young generation 70 times less often while in
    here; the threshold is restored on leaving."""
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], YOUNG_THRESHOLD), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


def check_environment(root: Path, env: str, diags: Diagnostics) -> ResolvedProject | None:
    """load + merge -> validate -> resolve, for one environment; None if anything failed."""
    with fewer_young_collections():  # `mlc validate` comes here without compile_project
        return _check_environment(root, env, diags)


def _check_environment(root: Path, env: str, diags: Diagnostics) -> ResolvedProject | None:
    local = Diagnostics()  # this environment's own problems decide whether it can go on
    loaded = load_environment(root, env, local)
    if loaded and loaded.layered:
        validate_layer(loaded.base, local)  # a base value every overlay replaces is still wrong
    project = validate_document(loaded.document, local) if loaded else None
    resolved = None
    if loaded and project:
        resolved = _resolve(root, loaded, project, loaded.document, local)
    elif loaded:  # the schema errors are known: add those of resolve over the valid rest
        rest = valid_rest(loaded.document)
        if rest is not None:
            found = Diagnostics()
            _resolve(root, loaded, rest[0], rest[1], found)
            local.extend(independent(found, rest[2], loaded.document))
    if resolved is not None and project.policies:
        from .policy.file import load_policies

        rules = load_policies(root, project.policies, loaded.document, local)
        resolved = None if rules is None else resolved.model_copy(update={"policies": rules})
    diags.extend(local)  # identical diagnostics from several environments are shown once
    return resolved


def _resolve(root: Path, loaded: Loaded, project: Project, document: Document,
             diags: Diagnostics) -> ResolvedProject | None:
    return resolve_project(project, document, env=loaded.env,
                           environments=list_environments(root), source=loaded.source,
                           source_hash=loaded.source_hash, diags=diags, layered=loaded.layered)


def load_environment(root: Path, env: str, diags: Diagnostics) -> Loaded | None:
    """ml.yaml, with environments/<env>.yaml merged over it when there is one."""
    files = [PROJECT_FILE]
    document = base = load_yaml_file(root / PROJECT_FILE, PROJECT_FILE, diags, root=root)
    layers = [document]
    if document is not None:  # the platform files ml.yaml extends lie under it (extends.py)
        document, platform = extend(root, document, diags)
        base = document
        files += [layer_source(root, layer.file) for layer in platform]
        layers += platform
    overlay_file = f"{ENVIRONMENTS_DIR}/{env}.yaml"
    # lexists: a dangling link named like an overlay is an error, not a missing overlay
    if document is not None and os.path.lexists(root / overlay_file):
        files.append(overlay_file)
        overlay = load_yaml_file(root / overlay_file, overlay_file, diags, allow_empty=True,
                                 root=root)
        layers.append(overlay)
        if overlay is not None:
            refuse_in_overlay(overlay, diags)
        document = merge_documents(document, overlay, diags) if overlay is not None else None
    if document is None or base is None or diags.has_errors():
        return None
    digest = hashlib.sha256()
    for name, layer in zip(files, layers, strict=True):  # the bytes that were parsed
        digest.update(name.encode() + b"\0" + layer.raw + b"\0")
    return Loaded(env=env, document=document, base=base, layered=overlay_file in files,
                  source=" + ".join(files), source_hash=digest.hexdigest())


def list_environments(root: Path) -> list[str]:
    folder = root / ENVIRONMENTS_DIR
    names = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    return names or [DEFAULT_ENVIRONMENT]


def select_environments(root: Path, envs: list[str] | None, diags: Diagnostics) -> list[str]:
    """The environments to build: those named, or all of them; unknown names are errors."""
    if not os.path.lexists(root / PROJECT_FILE):
        diags.error(MISSING_PROJECT, f"no {PROJECT_FILE} in `{root}`",
                    help="run mlc in the project's folder, or point at it with `-C DIR`")
        raise CompileFailed(diags)
    known = list_environments(root)
    for name in known:
        if not is_dns_label(name):
            diags.error(BAD_ENVIRONMENT_NAME, f"environment file name `{name}.yaml` is not a "
                        "valid environment name", help="use lowercase letters, digits and `-`")
    if not envs:
        diags.raise_if_errors()
        return known
    for name in envs:
        if name not in known:
            diags.error(UNKNOWN_ENVIRONMENT, f"unknown environment `{name}`",
                        help=did_you_mean(name, known)
                        or f"add {ENVIRONMENTS_DIR}/{name}.yaml")
    diags.raise_if_errors()
    return list(dict.fromkeys(envs))
