"""`mlc init [BLUEPRINT] [DIR]`: a new project from a blueprint, valid from the first commit.

A blueprint is a folder of package data under mlc/blueprints/<name>/ (ml.yaml, its overlays,
helper files); init copies it into an empty folder and adds what every project needs around
it: `ml.schema.json` (the schema the editor and ml.yaml's first line point at), a
`.vscode/settings.json` mapping ml.yaml and the overlays to their schemas, and the CI workflow
mlc ships (GitHub Actions or GitLab CI), pinned to this mlc's version. tests/test_init.py
initialises every blueprint and validates, compiles and checks the result.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from mlc import __version__

from .diagnostics import Diagnostics, Span, did_you_mean

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DIR_NOT_EMPTY = "MLC517"
UNKNOWN_BLUEPRINT = "MLC518"
INIT_FAILED = "MLC519"

# name -> what it starts, in the order `mlc init --list` shows them.
BLUEPRINTS = {
    "tabular": "a real-time classifier over tabular features: Feast features, scheduled "
               "training with gates, an online endpoint with a canary rollout, drift checks "
               "and alert routes; dev, staging and prod (the bundled fraud-detection example)",
    "batch": "batch scoring: a model retrained weekly that scores every customer each night "
             "into dated folders, no online endpoint; dev and prod",
    "ranking": "a search re-ranker: judged (query, product) rows, Feast features, an XGBoost "
               "ranker retrained nightly with NDCG gates, an online endpoint that scores each "
               "candidate, with a canary rollout and SLOs; dev and prod",
    "llm": "an LLM fine-tune and serve: a small language model fine-tuned by its own image "
           "on two GPU nodes (torchrun, EFA), registered with MLflow's transformers flavour, "
           "served by vLLM on KServe with a canary gated on time to first token and tokens "
           "per second; dev and prod (the bundled examples/llm)",
    "minimal": "an empty project: a name and pinned images, nothing else yet",
}
# Asked for in the issue, not expressible in ml.yaml yet: refused with the reason.
NOT_AVAILABLE = {
    "recommendation": "ml.yaml has no recommendation task yet: it trains no retrieval model "
                      "(embeddings for a nearest-neighbour search) and serves no endpoint "
                      "that retrieves candidates; `vectorStores` only write embeddings to "
                      "Milvus (docs/vector-stores.md). A re-ranker of candidates retrieved "
                      "elsewhere is the `ranking` blueprint",
}
# the blueprint closest to a refused one, offered in the refusal's help
START_FROM = {"recommendation": "ranking"}
DEFAULT_BLUEPRINT = "minimal"
CI_CHOICES = ("github", "gitlab", "none")
# CI template in the package -> where init writes it, and the line that pins mlc's version.
CI_TEMPLATES = {
    "github": ("github-workflow.yml", ".github/workflows/mlc.yml",
               'MLC_PIP_SPEC: "."      # what to pip install: "." in mlc\'s own repository'),
    "gitlab": ("gitlab-ci.yml", ".gitlab-ci.yml",
               'MLC_PIP_SPEC: "."        # what to pip install, e.g. "mlc==0.1.0"'),
}
SETTINGS = {
    # the overlay schema accepts partial documents: an overlay sets only what it changes
    "yaml.schemas": {"./ml.schema.json": ["ml.yaml"],
                     "./ml.overlay.schema.json": ["environments/*.yaml"]},
    # mlc reads YAML 1.2 (`1e-3` is a float, `no` a string); the editor must agree
    "yaml.yamlVersion": "1.2",
}


def list_text() -> str:
    width = max(len(n) for n in [*BLUEPRINTS, *NOT_AVAILABLE])
    lines = [f"{name.ljust(width)}  {text}" for name, text in BLUEPRINTS.items()]
    lines += [f"{name.ljust(width)}  (not available: {why})"
              for name, why in NOT_AVAILABLE.items()]
    return "\n".join(lines) + "\n"


def blueprint_files(name: str) -> dict[str, bytes]:
    """The files of a blueprint, by path inside the new project."""
    root = resources.files("mlc.blueprints") / name
    return dict(sorted(_walk(root, "")))


def _walk(folder: Traversable, prefix: str):
    for entry in folder.iterdir():
        if entry.name == "__pycache__" or entry.name.endswith((".pyc", ".pyo")):
            continue
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry.read_bytes()


def project_files(name: str, ci: str) -> dict[str, bytes]:
    """Everything `mlc init` writes for blueprint `name` with CI `ci`."""
    from mlc.schema.jsonschema import overlay_schema_text, schema_text

    files = blueprint_files(name)
    files["ml.schema.json"] = schema_text().encode("utf-8")
    files["ml.overlay.schema.json"] = overlay_schema_text().encode("utf-8")
    files[".vscode/settings.json"] = (json.dumps(SETTINGS, indent=2) + "\n").encode("utf-8")
    if ci in CI_TEMPLATES:
        source, target, pip_line = CI_TEMPLATES[ci]
        text = (resources.files("mlc.blueprints") / "ci" / source).read_text("utf-8")
        if text.count(pip_line) != 1:
            raise RuntimeError(f"the CI template {source} no longer has its MLC_PIP_SPEC line")
        pinned = pip_line.split("#")[0].replace('"."', f'"mlc=={__version__}"').rstrip()
        files[target] = text.replace(pip_line, f"{pinned}  # the mlc release this project "
                                     "uses").encode("utf-8")
        if ci == "github":  # the workflow's actions are pinned by commit: keep them current
            files[".github/dependabot.yml"] = (
                resources.files("mlc.blueprints") / "ci" / "dependabot.yml").read_bytes()
    return dict(sorted(files.items()))


def init(name: str | None, folder: Path, ci: str, diags: Diagnostics) -> list[str] | None:
    """Write the project; the paths written, or None with a located error."""
    name = name or DEFAULT_BLUEPRINT
    if name not in BLUEPRINTS:
        why = NOT_AVAILABLE.get(name)
        diags.error(UNKNOWN_BLUEPRINT, f"no blueprint `{name}`" + (f": {why}" if why else ""),
                    help=(f"start from `{START_FROM.get(name, 'tabular')}` and adapt it; "
                          f"blueprints: "
                          f"{', '.join(BLUEPRINTS)}") if why else
                    did_you_mean(name, list(BLUEPRINTS))
                    or f"blueprints: {', '.join(BLUEPRINTS)} (`mlc init --list`)")
        return None
    if os.path.lexists(folder) and (folder.is_symlink() or not folder.is_dir()
                                    or any(folder.iterdir())):
        what = "is not a folder" if folder.is_symlink() or not folder.is_dir() else \
            "is not empty"
        diags.error(DIR_NOT_EMPTY, f"{folder} {what}: mlc init writes a new project only into "
                    "an empty or new folder", span=Span(str(folder)),
                    help=f"choose a new folder: `mlc init {name} DIR`")
        return None
    files = project_files(name, ci)
    written: list[str] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, data in files.items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: a file that appeared since the emptiness check is never overwritten
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            written.append(path)
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else str(folder)
        diags.error(INIT_FAILED, f"could not write the project into {folder}: "
                    f"{exc.strerror or exc}", span=Span(where),
                    notes=[f"{len(written)} of {len(files)} files were written"],
                    help="fix the permissions or free space, delete the folder, and run "
                    "mlc init again")
        return None
    return written
