"""`mlc promote FROM TO`: make TO run the versions that FROM runs, in a small, reviewable edit.

Only version pins move, never configuration that is meant to differ between environments
(replicas, hardware, stores, schedules). The pins are:

- `images.train`, `images.serve`, `images.drift` and `images.custom.<name>`: the full
  reference FROM resolves to, digest included;
- `serving.<endpoint>.alias` or `serving.<endpoint>.version`: the registry alias or version
  FROM serves, for every endpoint that both environments have.

A pin is written into `environments/TO.yaml` only where TO resolves to a different value.
The file is edited in place with ruamel.yaml's round-trip mode, so its comments, key order,
flow mappings and quoting stay as they were; the result is compiled before it is written,
and nothing is written if TO would not be valid (for example a tag-only image promoted into
an environment that requires digests).
"""

from __future__ import annotations

import difflib
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from .diagnostics import Diagnostics
from .load import MAX_FILE_BYTES
from .overlay_edit import Overlay, check_not_linked, read_overlay, replace_overlay
from .pipeline import (
    ENVIRONMENTS_DIR,
    PROJECT_FILE,
    check_environment,
    list_environments,
    select_environments,
)
from .plan.objects import dig
from .reading import ReadRefused, read_project_file

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
PROMOTE_FAILED = "MLC914"
_BUILTIN_IMAGES = ("train", "serve", "drift")
# Sequence layouts tried when re-emitting the file: the one that reproduces it byte for byte
# wins, so that only the promoted lines change. (mapping indent, sequence indent, offset)
_LAYOUTS = ((2, 2, 0), (2, 4, 2), (4, 4, 0), (4, 6, 4), (2, 4, 0))
PATCH_DELETE = {"$patch": "delete"}


def promote(root: Path, source: str, target: str, diags: Diagnostics, *,
            dry_run: bool = False, stdout: IO[str] | None = None) -> int:
    stdout = stdout or sys.stdout
    if source == target:
        print("error: FROM and TO are the same environment", file=sys.stderr)
        return EXIT_USAGE
    select_environments(root, [source, target], diags)
    name = f"{ENVIRONMENTS_DIR}/{target}.yaml"
    if not os.path.lexists(root / name):  # a FIFO or a folder is the compile's error
        diags.error(PROMOTE_FAILED, f"there is no {name} to write "
                    "the pins into", help="promotion writes into an environment's overlay")
        return EXIT_INVALID
    if not check_not_linked(root, name, "mlc promote", diags):
        return EXIT_INVALID
    src = check_environment(root, source, diags)
    dst = check_environment(root, target, diags)
    diags.raise_if_errors()
    edits = pin_edits(src, dst)
    if not edits:
        stdout.write(f"Nothing to promote: {target} already runs what {source} runs.\n")
        return EXIT_OK
    overlay = read_overlay(root, name, "mlc promote", diags)
    if overlay is None:
        return EXIT_INVALID
    old_text = overlay.text
    base = load_plain(root)
    new_text = edit_overlay(old_text, edits, base)
    problems = _check(root, target, new_text, edits)
    if problems:
        diags.error(PROMOTE_FAILED, f"promoting {source} into {target} would not compile; "
                    f"{ENVIRONMENTS_DIR}/{target}.yaml was not changed",
                    notes=problems, help=f"fix {source}'s pins first (for example pin image "
                    "digests), or edit the overlay by hand")
        return EXIT_INVALID
    if not show_and_write(overlay, new_text, "mlc promote", diags, dry_run=dry_run,
                          stdout=stdout):
        return EXIT_INVALID if diags.has_errors() else EXIT_OK
    names = ", ".join(path for path, _ in edits)
    stdout.write(f"Promoted {source} -> {target}: {names}. Review with `mlc plan`.\n")
    return EXIT_OK


def show_and_write(overlay: Overlay, new_text: str, command: str, diags: Diagnostics, *,
                   dry_run: bool, stdout: IO[str]) -> bool:
    """Print the overlay's diff, then replace it atomically unless `dry_run`; True if written
    (False after a located error when it could not be)."""
    shown = overlay.name
    stdout.writelines(difflib.unified_diff(overlay.text.splitlines(True),
                                           new_text.splitlines(True), f"a/{shown}", f"b/{shown}"))
    if dry_run:
        stdout.write(f"(dry run: {shown} not written)\n")
        return False
    return replace_overlay(overlay, new_text, command, diags)


# ---------------------------------------------------------------------------------------
# Which pins move


def promotable(project) -> dict[str, Any]:
    """ml.yaml path -> value of every pin, as TO's overlay would spell it."""
    out: dict[str, Any] = {}
    for name, image in sorted(project.images.items()):
        key = f"images.{name}" if name in _BUILTIN_IMAGES else f"images.custom.{name}"
        out[key] = image.ref
    for name, e in sorted(project.endpoints.items()):
        out[f"serving.{name}"] = ("version", e.version) if e.version is not None \
            else ("alias", e.alias)
    return out


def pin_edits(src, dst) -> list[tuple[str, Any]]:
    want, have = promotable(src), promotable(dst)
    # Only pins both have: an image or endpoint that TO does not use is not promoted into it.
    return [(k, v) for k, v in want.items() if k in have and have[k] != v]


# ---------------------------------------------------------------------------------------
# Editing the overlay, keeping its comments and layout


def edit_overlay(text: str, edits: list[tuple[str, Any]], base: Any) -> str:
    yaml, doc = round_trip(text)
    from ruamel.yaml.comments import CommentedMap

    if doc is None:
        doc = CommentedMap()
    for path, value in edits:
        if path.startswith("images."):
            *parents, leaf = path.split(".")
            mapping_at(doc, parents)[leaf] = value
            continue
        endpoint = path.split(".", 1)[1]
        node = mapping_at(doc, ["serving", endpoint])
        kind, pinned = value
        other = "version" if kind == "alias" else "alias"
        node[kind] = pinned
        base_endpoint = dig(base, "serving", endpoint)
        if isinstance(base_endpoint, dict) and base_endpoint.get(other) is not None:
            directive = CommentedMap(PATCH_DELETE)  # alias and version exclude each other
            directive.fa.set_flow_style()
            node[other] = directive
        elif other in node:
            del node[other]
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def round_trip(text: str):
    """A round-trip YAML instance whose layout reproduces `text`, and the document."""
    from ruamel.yaml import YAML

    best = None
    for mapping, sequence, offset in _LAYOUTS:
        yaml = YAML()
        yaml.preserve_quotes = True
        yaml.width = 4096  # never fold a long line that was not folded
        yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
        doc = yaml.load(text)
        out = io.StringIO()
        yaml.dump(doc, out)
        if out.getvalue() == text or not text.strip():
            return yaml, yaml.load(text)
        score = sum(1 for _ in difflib.unified_diff(text.splitlines(), out.getvalue()
                                                    .splitlines(), n=0))
        if best is None or score < best[0]:
            best = (score, yaml)
    return best[1], best[1].load(text)


def mapping_at(doc, keys: list[str]):
    from ruamel.yaml.comments import CommentedMap

    node = doc
    for key in keys:
        child = node.get(key)
        if not isinstance(child, dict):
            child = CommentedMap()
            node[key] = child
        node = child
    return node


def load_plain(root: Path) -> Any:
    """ml.yaml as plain data, for where the base sets a pin; None when it cannot be read."""
    from ruamel.yaml import YAML

    try:
        raw = read_project_file(root, PROJECT_FILE, MAX_FILE_BYTES)
        return YAML(typ="safe", pure=True).load(raw.decode("utf-8"))
    except Exception:  # the project compiled a moment ago; a parse problem means "no base"
        return None


def compile_with_overlay(root: Path, env: str, new_text: str) -> tuple[Any, list[str]]:
    """ENV compiled with `new_text` as its overlay, in a scratch copy of the project: the
    project (None when it fails) and its errors."""
    try:  # as the compile read it a moment ago: bounded, never through a link out
        base = read_project_file(root, PROJECT_FILE, MAX_FILE_BYTES)
    except ReadRefused as err:
        return None, [f"cannot read {PROJECT_FILE}: {err.detail}"]
    with _scratch_folder(root) as scratch:
        copy = Path(scratch)
        (copy / PROJECT_FILE).write_bytes(base)
        # the compile reads only this environment's overlay, and the others' names (resolve
        # lists the environments): copying their files would follow links and open FIFOs
        (copy / ENVIRONMENTS_DIR).mkdir()
        for other in list_environments(root):
            (copy / ENVIRONMENTS_DIR / f"{other}.yaml").write_text("{}\n", encoding="utf-8")
        _link_the_rest(root, copy)
        (copy / ENVIRONMENTS_DIR / f"{env}.yaml").write_text(new_text, encoding="utf-8")
        diags = Diagnostics()
        project = check_environment(copy, env, diags)
        if diags.has_errors() or project is None:
            return None, [f"{d.code}: {d.message}" + (f" ({d.span})" if d.span else "")
                          for d in diags.errors]
        return project, []


def _scratch_folder(root: Path) -> tempfile.TemporaryDirectory:
    """Next to the project where possible: a platform file (`extends: ../platform/x.yaml`)
    or a shared policies file named by a relative path then resolves as it does from the
    project itself."""
    try:
        return tempfile.TemporaryDirectory(prefix=".mlc-overlay-", dir=Path(root).resolve().parent)
    except OSError:  # a read-only parent: paths outside the project will not resolve
        return tempfile.TemporaryDirectory(prefix="mlc-overlay-")


def _link_the_rest(root: Path, copy: Path) -> None:
    # the files ml.yaml names inside the project (a vendored platform file, a policies file)
    for entry in sorted(Path(root).iterdir()):
        if entry.name not in (PROJECT_FILE, ENVIRONMENTS_DIR) and not (copy / entry.name).exists():
            os.symlink(entry.resolve(), copy / entry.name)


def _check(root: Path, target: str, new_text: str, edits: list[tuple[str, Any]]) -> list[str]:
    """Compile TO with the new overlay; the problems, or [] when it works."""
    project, problems = compile_with_overlay(root, target, new_text)
    if project is None:
        return problems
    now = promotable(project)
    return [f"{path} resolves to {now.get(path)!r}, not {value!r}"
            for path, value in edits if now.get(path) != value]
