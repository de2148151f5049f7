"""`extends:`: a project built on a platform file that a platform team owns.

    ml.yaml  extends: ../platform/platform.yaml   (which may extend another, and so on)

A platform file holds what a platform team decides for many projects: the hardware
catalogue, the images, the policies file, and `platform.argocd`, `platform.cost` (prices,
budgets), `platform.guardrails` and `platform.imagePolicy`. Nothing else is allowed there
(MLC520): a platform file that set a project's models or namespace would be a second ml.yaml.

Layers, lowest first: the farthest platform file, ..., the nearest, ml.yaml, then the
environment's overlay. Each is merged over the one below it by the overlay rules
(overlay.py), so a project overrides a platform value by setting it, and `$patch: delete`
in ml.yaml drops one. Spans keep the file that set each value, so diagnostics and
`mlc explain` name the platform file where a value came from.

Paths are local (relative to the file that names them), read bounded and regular-only
(reading.py); a URL is refused (MLC524): resolving a git URL needs the network, so a shared
platform repository is vendored (a git submodule or subtree) and named by its path.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path, PurePosixPath

from . import vendor
from .diagnostics import Diagnostics, FieldPath, Span, did_you_mean
from .load import Document, load_yaml_file
from .overlay import merge_documents

NOT_ALLOWED = "MLC520"
NO_PLATFORM_FILE = "MLC521"
EXTENDS_CYCLE = "MLC522"
EXTENDS_IN_OVERLAY = "MLC523"
EXTENDS_URL = "MLC524"

ALLOWED = ("apiVersion", "kind", "extends", "hardware", "images", "policies", "platform")
ALLOWED_PLATFORM = ("argocd", "cost", "guardrails", "imagePolicy")
PLATFORM_KIND = "Platform"
MAX_DEPTH = 8


def extend(root: Path, project: Document, diags: Diagnostics) -> tuple[Document, list[Document]]:
    """ml.yaml merged over the platform files it extends, and those files (nearest first);
    `project` unchanged (and no layers) when it extends nothing or after an error."""
    layers = platform_layers(root, project, diags)
    if not layers:
        return project, []
    merged = None
    for layer in reversed(layers):  # the farthest platform file is the lowest layer
        layer = _as_base(layer, project)
        merged = layer if merged is None else merge_documents(merged, layer, diags)
    result = merge_documents(merged, project, diags)
    return replace(result, file=project.file, raw=project.raw), layers


def platform_layers(root: Path, project: Document, diags: Diagnostics) -> list[Document]:
    """The platform files of the chain, nearest first; [] after an error (reported)."""
    chain: list[Document] = []
    names = ["ml.yaml"]
    seen = {os.path.realpath(root / "ml.yaml")}
    doc, folder = project, Path(root)
    while isinstance(doc.data, dict) and doc.data.get("extends") is not None:
        value, span = doc.data["extends"], doc.spans.get(("extends",))
        if isinstance(value, dict):  # a pinned commit of a platform repository (vendor.py)
            path = _vendored(root, doc, diags)
            if path is None:
                return []
        elif not isinstance(value, str) or not value.strip():
            diags.error(NOT_ALLOWED, "`extends` takes the path of a platform file",
                        span=span, path=("extends",), help="e.g. `extends: "
                        "../platform/platform.yaml`, or `extends: {git: URL, rev: <commit>, "
                        "path: platform.yaml}`")
            return []
        elif "://" in value or value.startswith("git@"):
            diags.error(EXTENDS_URL, f"`extends: {value}` is a URL; mlc reads platform files "
                        "from local paths only (no network at compile time)", span=span,
                        path=("extends",), help="pin a commit of the platform repository: "
                        f"`extends: {{git: {value.split('#')[0][:80]}, rev: <40-hex commit>, "
                        "path: platform.yaml}` (then `mlc vendor`), or name a vendored copy "
                        "by its path")
            return []
        else:
            path = Path(os.path.normpath(folder / value))
        shown = Path(os.path.relpath(path, root)).as_posix()
        if not os.path.lexists(path):
            diags.error(NO_PLATFORM_FILE, f"the platform file `{shown}` does not exist",
                        span=span, path=("extends",), help=_nearby(path)
                        or f"give the path relative to the file that names it ({doc.file}), "
                        "or remove `extends:`")
            return []
        real = os.path.realpath(path)
        if real in seen or len(chain) >= MAX_DEPTH:
            loop = " -> ".join([*names, shown])
            what = "extends itself" if real in seen else f"goes deeper than {MAX_DEPTH} files"
            diags.error(EXTENDS_CYCLE, f"the chain of platform files {what}: {loop}",
                        span=span, path=("extends",), help="remove the `extends:` that closes "
                        "the loop; a platform file extends only files below it")
            return []
        seen.add(real)
        names.append(shown)
        layer = load_yaml_file(path, shown, diags, allow_empty=True)
        if layer is None or not _check_keys(layer, diags):
            return []
        chain.append(_paths_from_root(layer, path.parent, Path(root)))
        doc, folder = layer, path.parent
    return chain


def _vendored(root: Path, doc: Document, diags: Diagnostics) -> Path | None:
    """The vendored copy of `extends: {git, rev, path}`; None after a located error."""
    ref, code, what = vendor.parse(doc.data["extends"])
    if ref is None:
        value = doc.data["extends"]
        unknown = sorted(k for k in value if k not in vendor.KEYS)
        place = ("extends", "rev") if code == vendor.MOVING_REF else (
            ("extends", unknown[0]) if unknown else ("extends",))
        help = (f"pin the commit the ref names now: `git ls-remote {doc.data['extends'].get('git')}"
                " <ref>` prints it (40 hex digits); a branch or tag moves, and the project "
                "would compile differently from one day to the next"
                if code == vendor.MOVING_REF else
                (unknown and did_you_mean(unknown[0], vendor.KEYS)) or
                "write `extends: {git: https://git.example.com/platform.git, rev: <40-hex "
                "commit>, path: platform.yaml}`")
        diags.error(code, f"`extends` from git: {what}", span=doc.key_spans.get(place)
                    if unknown and code != vendor.MOVING_REF else doc.span_for(place),
                    path=place, help=help)
        return None
    problem = vendor.check_vendored(ref, root)
    if problem is not None:
        diags.error(vendor.NOT_VENDORED, f"`extends` from git: {problem}",
                    span=doc.span_for(("extends",)), path=("extends",),
                    help="run `mlc vendor` (the one command that fetches) and commit "
                    f"{vendor.VENDOR_DIR}/, or run it in CI before `mlc plan`")
        return None
    return ref.folder(root) / ref.path


def layer_source(root: Path, file: str) -> str:
    """How the provenance names a layer: a vendored file as its URL, commit and path."""
    parts = PurePosixPath(file).parts
    vendor_parts = PurePosixPath(vendor.VENDOR_DIR).parts
    if parts[:len(vendor_parts)] != vendor_parts or len(parts) <= len(vendor_parts) + 1:
        return file
    folder = Path(root).joinpath(*parts[:len(vendor_parts) + 1])
    try:
        marker = json.loads((folder / vendor.MARKER).read_text("utf-8"))
        return vendor.GitRef(marker["git"], marker["rev"],
                             "/".join(parts[len(vendor_parts) + 1:])).shown()
    except (OSError, ValueError, KeyError, TypeError):
        return file


def _nearby(path: Path) -> str | None:
    try:
        names = [p.name for p in path.parent.iterdir() if p.suffix in (".yaml", ".yml")]
    except OSError:
        return None
    return did_you_mean(path.name, names) if names else None


def refuse_in_overlay(overlay: Document, diags: Diagnostics) -> None:
    """The platform is chosen by ml.yaml for every environment: an overlay that set
    `extends` would change nothing (the chain is merged before overlays), so it is an error."""
    if isinstance(overlay.data, dict) and "extends" in overlay.data:
        diags.error(EXTENDS_IN_OVERLAY, f"`extends` in {overlay.file}: an environment overlay "
                    "cannot choose the platform file", span=overlay.span_for(("extends",)),
                    path=("extends",), help="set `extends:` in ml.yaml; to change a platform "
                    "value in one environment, set that value in this overlay")


def _check_keys(layer: Document, diags: Diagnostics) -> bool:
    data = layer.data if layer.data is not None else {}
    if not isinstance(data, dict):
        diags.error(NOT_ALLOWED, f"{layer.file} is not a mapping of platform settings",
                    span=Span(layer.file, 1, 1), help="start it with `hardware:`, `images:`, "
                    "`policies:` or `platform:`")
        return False
    ok = True

    def bad(path: FieldPath, allowed: tuple[str, ...], where: str) -> None:
        nonlocal ok
        ok = False
        diags.error(NOT_ALLOWED, f"`{'.'.join(map(str, path))}` is not allowed in a platform "
                    f"file", span=layer.key_spans.get(path) or layer.span_for(path), path=path,
                    help=f"a platform file sets only {where}: {', '.join(allowed)}; set "
                    "everything else in the project's ml.yaml")

    for key in data:
        if key not in ALLOWED:
            bad((key,), ALLOWED[2:], "these keys")
    platform = data.get("platform")
    if isinstance(platform, dict):
        for key in platform:
            if key not in ALLOWED_PLATFORM:
                bad(("platform", key), ALLOWED_PLATFORM, "these `platform` keys")
    if data.get("kind", PLATFORM_KIND) != PLATFORM_KIND:
        ok = False
        diags.error(NOT_ALLOWED, f"{layer.file} says `kind: {data.get('kind')}`; a platform "
                    f"file is `kind: {PLATFORM_KIND}`", span=layer.span_for(("kind",)),
                    path=("kind",), help="extend a platform file, not another project")
    return ok


def _paths_from_root(layer: Document, folder: Path, root: Path) -> Document:
    """A platform file names its policies file relative to itself; the compiler reads it
    relative to the project."""
    data = layer.data if isinstance(layer.data, dict) else {}
    policies = data.get("policies")
    if isinstance(policies, str) and policies and not os.path.isabs(policies):
        moved = Path(os.path.relpath(os.path.normpath(folder / policies), root)).as_posix()
        data = {**data, "policies": moved}
    return replace(layer, data=data)


def _as_base(layer: Document, project: Document) -> Document:
    """A layer to merge under the project: without its own `extends`, and with the project's
    apiVersion and kind (a platform file's `kind: Platform` is not the project's kind)."""
    data = {k: v for k, v in layer.data.items() if k not in ("extends", "apiVersion", "kind")}
    for key in ("apiVersion", "kind"):
        if isinstance(project.data, dict) and key in project.data:
            data[key] = project.data[key]
    drop = ("extends", "apiVersion", "kind")
    return replace(layer, data=data,
                   spans={p: s for p, s in layer.spans.items() if not p or p[0] not in drop},
                   key_spans={p: s for p, s in layer.key_spans.items()
                              if not p or p[0] not in drop})


def chain_files(root: Path) -> list[str]:
    """The platform files ml.yaml extends, as shown (relative to the project), and the
    policies files they name: inputs a saved plan must check for staleness."""
    diags = Diagnostics()
    project = load_yaml_file(Path(root) / "ml.yaml", "ml.yaml", diags, root=Path(root))
    if project is None:
        return []
    layers = platform_layers(Path(root), project, diags)
    out = [layer.file for layer in layers]
    out += [p for layer in layers
            if isinstance(p := (layer.data or {}).get("policies"), str)]
    return out


def vendor_chain(root: Path, diags: Diagnostics) -> list[str]:
    """`mlc vendor`: fetch every pinned commit the chain of platform files names (a vendored
    platform file may extend another); the references, as the provenance shows them."""
    root = Path(root)
    doc = load_yaml_file(root / "ml.yaml", "ml.yaml", diags, root=root)
    done: list[str] = []
    folder = root
    while doc is not None and isinstance(doc.data, dict) and len(done) < MAX_DEPTH:
        value = doc.data.get("extends")
        if isinstance(value, dict):
            ref, code, what = vendor.parse(value)
            if ref is None:
                _vendored(root, doc, diags)  # reports the located error
                return done
            try:
                vendor.vendor(ref, root)
            except vendor.VendorError as exc:
                diags.error(vendor.VENDOR_FAILED, f"`mlc vendor`: {exc}",
                            span=doc.span_for(("extends",)), path=("extends",),
                            help="check the URL and that the commit is in the repository "
                            "(pushed, not only local)")
                return done
            done.append(ref.shown())
            path = ref.folder(root) / ref.path
        elif isinstance(value, str) and "://" not in value:
            path = Path(os.path.normpath(folder / value))
        else:
            return done
        if not path.is_file():
            return done
        doc = load_yaml_file(path, Path(os.path.relpath(path, root)).as_posix(), diags,
                             allow_empty=True)
        folder = path.parent
    return done
