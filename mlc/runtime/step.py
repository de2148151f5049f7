"""One pipeline step: find it in project.json, build its context, run its entry function.

The generated manifests run `python -m mlc.runtime step --project P --pipeline X --step S`
in every pod (a custom trainer's too: its command is run from here); `mlc run` calls
`run_step` for the same step on this machine. Both go through `build_context`, so a step sees
the same parameters, paths and settings wherever it runs (mlc/step_contract.py).
Entry modules are imported only when their step runs: torch, MLflow and Feast stay off the
import path of everything else.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from mlc import step_contract as sc
from mlc.compiler import ir
from mlc.runtime import feast_import
from mlc.runtime.train import threads

# Exit codes a pipeline (and Argo's retry policy) can tell apart.
EXIT_FAILED = 1
EXIT_BAD_DATA = 10
EXIT_GATES = 11
EXIT_DRIFT = 20

# kind -> (module, function). A module may serve several kinds (features, registry).
ENTRY_POINTS: dict[str, tuple[str, str]] = {
    "wait_upstream": ("mlc.runtime.train.upstream", "wait"),
    "validate_data": ("mlc.runtime.train.validation", "run"),
    "feature_apply": ("mlc.runtime.features", "apply"),
    "materialize": ("mlc.runtime.features", "materialize"),
    "search_start": ("mlc.runtime.train.search", "start"),
    "search": ("mlc.runtime.train.search", "run"),
    "train": ("mlc.runtime.train.trainer", "run"),
    "evaluate": ("mlc.runtime.train.evaluation", "run"),
    "explain": ("mlc.runtime.train.explain", "run"),
    "register": ("mlc.runtime.train.registry", "register"),
    "promote": ("mlc.runtime.train.registry", "promote"),
    "drift_check": ("mlc.runtime.drift.step", "run"),
    "batch_score": ("mlc.runtime.serve.batch", "run"),
    "ab_verdict": ("mlc.runtime.verdict.step", "run"),
    "model_quality": ("mlc.runtime.quality.step", "run"),
    "write_vectors": ("mlc.runtime.vectors", "run"),
}


class StepFailed(Exception):
    """A step that cannot go on; `message` is the readable report the user sees."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class StepContext:
    project: ir.ResolvedProject
    pipeline: ir.Pipeline
    step: ir.Step
    params: dict[str, str]
    run_dir: Path  # shared by the steps of one pipeline run: snapshot, model, metrics
    data_root: Path  # relative source paths resolve against it
    feast_repo: Path | None
    mlflow_tracking_uri: str
    checkpoint_dir: Path | None  # a local folder (or a mounted volume)
    checkpoint_uri: str | None = None  # an object-store URI, when no folder is given
    project_file: Path | None = None  # the project.json this context was read from
    run_id: str = "manual"  # names this pipeline run (the Argo workflow, or mlc run's id)
    # the train step's MLC_EXPORTS and MLC_EXPORT_TRITON_BATCHING (mlc/runtime/export/)
    exports: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> ir.Model:
        if not self.pipeline.model:
            raise StepFailed(f"pipeline `{self.pipeline.name}` has no model")
        return self.project.models[self.pipeline.model]

    def param(self, name: str, default: str = "") -> str:
        return self.params.get(name, default)


def load_project(path: Path) -> ir.ResolvedProject:
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise StepFailed(f"cannot read the project file {path}: {exc.strerror}") from exc
    return ir.ResolvedProject.model_validate_json(text)


def build_context(project: ir.ResolvedProject, pipeline: str, step: str, *,
                  environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, str] | None = None,
                  project_file: Path | None = None) -> StepContext:
    """The context of one step: IR defaults, then the environment (MLC_*), then `overrides`."""
    env = os.environ if environ is None else environ
    if pipeline not in project.pipelines:
        raise StepFailed(f"no pipeline `{pipeline}` in project `{project.name}` (known: "
                         f"{', '.join(project.pipelines) or 'none'})")
    pipe = project.pipelines[pipeline]
    by_name = {s.name: s for s in pipe.steps}
    if step not in by_name:
        raise StepFailed(f"pipeline `{pipeline}` has no step `{step}` (known: "
                         f"{', '.join(by_name)})")
    params = {p.name: p.default for p in pipe.parameters}
    for name in params:
        value = param_from_env(env, name)
        if value is not None:
            params[name] = value
    for name, value in (overrides or {}).items():
        if name not in params:
            raise StepFailed(f"pipeline `{pipeline}` has no parameter `{name}` (known: "
                             f"{', '.join(params) or 'none'})")
        params[name] = value
    run_dir = Path(env.get(sc.RUN_DIR_ENV) or Path(tempfile.gettempdir()) / "mlc-run" / pipeline)
    feast_repo = env.get(sc.FEAST_REPO_ENV)
    # a folder (a mounted volume, or mlc run's .mlc/checkpoints) wins over a URI, and the
    # pipeline's setting (MLC_CHECKPOINT_URI) over the IR's path
    checkpoint_dir = env.get(sc.CHECKPOINT_DIR_ENV)
    checkpoint_uri = None
    target = env.get(sc.CHECKPOINT_URI_ENV) or by_name[step].checkpoint_path
    if not checkpoint_dir and target:
        if "://" in target:
            checkpoint_uri = target  # object store: written through pyarrow.fs
        else:
            checkpoint_dir = target
    return StepContext(
        project=project, pipeline=pipe, step=by_name[step], params=params,
        run_dir=run_dir, data_root=Path(env.get(sc.DATA_ROOT_ENV) or "."),
        feast_repo=Path(feast_repo) if feast_repo else None,
        mlflow_tracking_uri=env.get(sc.TRACKING_URI_ENV)
        or project.platform.mlflow_tracking_uri,
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
        checkpoint_uri=checkpoint_uri, project_file=project_file,
        run_id=env.get(sc.RUN_ID_ENV) or env.get("ARGO_WORKFLOW_NAME") or "manual",
        exports={k: env[k] for k in (sc.EXPORTS_ENV, sc.EXPORT_BATCHING_ENV) if env.get(k)})


def param_from_env(env: Mapping[str, str], name: str) -> str | None:
    """MLC_PARAM_<NAME>_B64, the form a pod gets (backends/argo/steps.py: no `$(VAR)`
    expansion or template pass can touch base64), else the plain MLC_PARAM_<NAME> that
    `mlc run` and a custom command's own environment carry."""
    key = f"{sc.PARAM_PREFIX}{name.upper()}"
    encoded = env.get(key + sc.PARAM_B64_SUFFIX)
    if encoded is None:
        return env.get(key)
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise StepFailed(f"{key}{sc.PARAM_B64_SUFFIX} is not base64-encoded UTF-8") from exc


def write_record(path: Path, value: Mapping) -> None:
    """A step's JSON record in the run folder, replaced whole (a reader never sees half)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", "utf-8")
    tmp.replace(path)


def entry_point(kind: str):
    module_name, function = ENTRY_POINTS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise StepFailed(f"step kind `{kind}` needs {module_name}, which this installation "
                             "does not have (is this the right runtime image?)") from exc
        raise
    return getattr(module, function)


def run_step(ctx: StepContext) -> None:
    """Run one step in this process; raises StepFailed with a readable report. With
    `platform.lineage`, the step's OpenLineage events frame it (mlc/runtime/lineage.py)."""
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    if ctx.project.platform.lineage is None:
        _call(ctx)
        return
    # by name, like the entry points: the lineage module reads sources, which import this one
    lineage = importlib.import_module("mlc.runtime.lineage").StepLineage(ctx)
    lineage.start()
    try:
        _call(ctx)
    except StepFailed as exc:
        lineage.fail(exc.message)
        raise
    except BaseException as exc:
        lineage.fail(f"{type(exc).__name__}: {exc}")
        raise
    lineage.complete()


def _call(ctx: StepContext) -> None:
    feast_import.install()  # before any step imports Feast (mlc/runtime/feast_import.py)
    entry = entry_point(ctx.step.kind)
    threads.configure(ctx)  # a torch step uses the CPUs its pod has, not the node's
    entry(ctx)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlc.runtime step",
                                     description="Run one step of a pipeline of project.json.")
    parser.add_argument("--project", required=True, type=Path, help="project.json (the IR)")
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--step", required=True)
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a pipeline parameter (repeatable)")
    args = parser.parse_args(argv)
    try:
        overrides = parse_params(args.param)
        project = load_project(args.project)
        ctx = build_context(project, args.pipeline, args.step, overrides=overrides,
                            project_file=args.project)
        run_step(ctx)
    except StepFailed as exc:
        print(f"step {args.pipeline}/{args.step} failed:\n{exc.message}", file=sys.stderr)
        return exc.exit_code
    except Exception:
        traceback.print_exc()
        return EXIT_FAILED
    return 0


def parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise StepFailed(f"parameter `{item}` is not NAME=VALUE")
        out[name] = value
    return out


def exit_process(code: int) -> NoReturn:
    """End a process that ran steps: flush, run the exit handlers (MLflow's, logging's,
    multiprocessing's), then exit at once, without the interpreter's teardown of every
    module torch, Feast, MLflow and Great Expectations loaded (about 4 s of CPU after
    `mlc run` on the example). Whatever a step writes is written and closed by then."""
    import atexit

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
