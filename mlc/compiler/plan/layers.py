"""Which layer set each changed value: the plan's source changes, as `mlc explain` names them.

The plan's actions are the output's objects; a reviewer also wants to know which file of the
project asked for the change: ml.yaml, the environment's overlay, or a platform file that
ml.yaml `extends:` (a platform team's, often in another repository). With `--base-ref` the
project's own files at that commit are read from git into a scratch folder, both sides are
loaded and merged as the compiler does (pipeline.load_environment), and every value that
differs is listed with the file, line and column that set it: the new value's, or the old
one's for a value that went away. Without a git base the old inputs are not known, and no
source changes are listed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostics, FieldPath, Span, format_path
from ..load import Document
from ..overlay import PATCH
from .diff import MISSING
from .trees import GitBase, _cat_blobs, _git

ML_YAML, OVERLAY, PLATFORM = "ml.yaml", "environment overlay", "platform file"
MAX_SOURCE_CHANGES = 200  # per environment; a larger edit is listed up to here, then counted


@dataclass(frozen=True)
class SourceChange:
    path: str  # the dotted ml.yaml path, `serving.fraud-api.autoscaling.minReplicas`
    old: Any  # MISSING where the value is new
    new: Any  # MISSING where it went away
    origin: str  # file:line:col of the value that decides (the new one, or the old)
    layer: str  # ml.yaml | environment overlay | platform file

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "origin": self.origin, "layer": self.layer}
        if self.old is not MISSING:
            out["old"] = self.old
        if self.new is not MISSING:
            out["new"] = self.new
        return out


def layer_of(file: str) -> str:
    if file == ML_YAML:
        return ML_YAML
    if file.startswith("environments/"):
        return OVERLAY
    return PLATFORM


def source_changes(old: Document | None, new: Document) -> list[SourceChange]:
    before = dict(_leaves(old.data if old else {}, ()))
    after = dict(_leaves(new.data, ()))
    out = []
    for path in sorted(set(before) | set(after), key=_sort_key):
        was, now = before.get(path, MISSING), after.get(path, MISSING)
        if was is not MISSING and now is not MISSING and _equal(was, now):
            continue
        doc = new if now is not MISSING else old
        span = _span(doc, path)
        file = span.file if span else ML_YAML
        out.append(SourceChange(format_path(path), was, now, str(span) if span else file,
                                layer_of(file)))
    return out


def base_documents(git: GitBase, root: Path, out_dir: Path, envs: list[str]
                   ) -> dict[str, Document | None]:
    """Each environment's merged document as the project's files were at the base commit;
    None where the base has no ml.yaml there (a deploy branch) or it does not load. The
    repository's YAML files are copied, less the output tree: a platform file may lie
    outside the project's folder (`extends: ../platform/platform.yaml`)."""
    from ..pipeline import PROJECT_FILE, load_environment

    project = os.path.relpath(root.resolve(), git.toplevel).replace(os.sep, "/")
    output = os.path.relpath(Path(out_dir).resolve(), git.toplevel).replace(os.sep, "/") + "/"
    listing = _git(git.toplevel, "ls-tree", "-r", "-z", "--full-tree", git.commit)
    blobs = {}
    for entry in listing.split(b"\0"):
        meta, _, name = entry.partition(b"\t")
        fields = meta.split()
        if len(fields) != 3 or fields[1] != b"blob" or fields[0] not in (b"100644", b"100755"):
            continue
        path = name.decode("utf-8", errors="surrogateescape")
        if path.endswith((".yaml", ".yml")) and not path.startswith(output) \
                and ".." not in Path(path).parts:
            blobs[path] = fields[2].decode()
    base_project = PROJECT_FILE if project == "." else f"{project}/{PROJECT_FILE}"
    if base_project not in blobs:
        return dict.fromkeys(envs)
    contents = _cat_blobs(git.toplevel, list(blobs.values()))
    out: dict[str, Document | None] = {}
    with tempfile.TemporaryDirectory(prefix="mlc-base-") as tmp:
        for path, sha in blobs.items():
            target = Path(tmp) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(contents[sha])
        folder = Path(tmp) / project
        for env in envs:
            # an environment the base lacks is compared with the base's ml.yaml alone
            loaded = load_environment(folder, env, Diagnostics())
            out[env] = loaded.document if loaded else None
    return out


def attach(plan: Any, root: Path, out_dir: Path, git: GitBase) -> None:
    """Set each environment's `sources` (model.EnvPlan) from the base commit's inputs; an
    environment whose base inputs are unknown (no ml.yaml there, or one that does not load)
    gets none rather than a list of every value as new."""
    from ..pipeline import load_environment

    envs = [e.env for e in plan.environments]
    base = base_documents(git, root, out_dir, envs)
    for env in plan.environments:
        loaded = load_environment(root, env.env, Diagnostics())
        if loaded is not None and base.get(env.env) is not None:
            env.sources = source_changes(base[env.env], loaded.document)


def _leaves(value: Any, path: FieldPath):
    """Scalars and lists of scalars by path; mappings and lists of mappings walked into."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            if key != PATCH:
                yield from _leaves(value[key], (*path, key))
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield path, value


def _span(doc: Document | None, path: FieldPath) -> Span | None:
    if doc is None:
        return None
    return doc.spans.get(path) or doc.key_spans.get(path) or doc.span_for(path)


def _equal(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _sort_key(path: FieldPath) -> tuple:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in path)
