"""`mlc run`: the project's pipelines on this machine, step by step, with no cluster.

    compile the environment          -> .mlc/deploy/<env>/ (the Feast repo among it)
                                        .mlc/<env>/project.json (the IR, as pods get it)
    materialisation pipeline(s)      feast apply, materialise into the local online store
    training pipeline(s)             validate -> materialise -> train -> evaluate ->
                                     register -> promote, tracked in .mlc/mlflow.db

Each step is the entry function the cluster runs (mlc.runtime.step), called in this process
so that torch, MLflow and Feast are imported once. Each step gets the environment its
container declares (`LocalProject.step_environ`: its identity, the parameters it reads,
base64-encoded, its trainer's own env), with this machine's folders for the pod's:
MLC_DATA_ROOT is the project folder, MLflow is a SQLite store under .mlc/, checkpoints go
to .mlc/checkpoints/<model>/. What a step changes in the environment or the working
directory is undone before the next, and a step that exits (SystemExit) fails as its pod
would, with its exit code. A step's output goes to
its log file (.mlc/runs/<pipeline>/<run-id>/logs/<step>.log); the screen shows one line per
step, and under it what the step's summary file says (the gates against their thresholds,
the rows read, the registered version, the drifted features: summaries.py). `promote`
defaults to `if-none` here: a fresh project gets a champion to serve, and an existing
champion is never replaced without `-p promote=true`.

`mlc run serve ENDPOINT` and `mlc run drift CHECK` run the serving and drift runtimes with
the same local settings.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlc import step_contract as sc
from mlc.compiler import ir
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.resolve.exports import export_env

from . import summaries
from .progress import Progress

STATE_DIR = ".mlc"
FEAST_REPO_DIR = "feast"  # the Feast backend's folder in the output tree
# a step's env naming a cluster service that has no counterpart on this machine: left out,
# so the step keeps its report beside the run instead (mlc/runtime/pushgateway.py)
LOCAL_UNSET = frozenset({"MLC_PUSHGATEWAY_URL"})
# the parts of a pod's contract a step may find set by an earlier step in this process:
# each step starts without them and gets only its own (`step_environ`)
STEP_SCOPED_PREFIXES = (sc.PARAM_PREFIX,)
STEP_SCOPED = frozenset({sc.PIPELINE_ENV, sc.STEP_ENV, sc.MODEL_ENV, sc.PROJECT_JSON_ENV,
                         sc.CHECKPOINT_DIR_ENV, sc.CHECKPOINT_URI_ENV, sc.SEARCH_TRIAL_ENV,
                         sc.EXPORTS_ENV, sc.EXPORT_BATCHING_ENV})


@dataclass(frozen=True)
class LocalProject:
    root: Path
    env: str
    project: ir.ResolvedProject
    state: Path  # <root>/.mlc
    project_file: Path
    feast_repo: Path | None

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.state / 'mlflow.db'}"

    def environ(self, pipeline: str | None = None, run_id: str | None = None,
                model: str | None = None) -> dict[str, str]:
        """The settings every step gets, pointing at this machine's folders."""
        env = {
            sc.DATA_ROOT_ENV: str(self.root),
            sc.TRACKING_URI_ENV: self.tracking_uri,
            "MLC_ARTIFACT_ROOT": (self.state / "mlartifacts").as_uri(),
            "MLC_MATERIALIZE_FROM": "all",
            # a local run talks to nothing outside this machine (the user may say otherwise)
            "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true"),
        }
        if self.feast_repo is not None:
            env[sc.FEAST_REPO_ENV] = str(self.feast_repo)
        if pipeline and run_id:
            env[sc.RUN_DIR_ENV] = str(self.state / "runs" / pipeline / run_id)
            env[sc.RUN_ID_ENV] = f"{pipeline}-{run_id}"
        if model:
            env[sc.CHECKPOINT_DIR_ENV] = str(self.state / "checkpoints" / model)
        return env

    def step_environ(self, pipeline: ir.Pipeline, step: ir.Step, run_id: str,
                     params: Mapping[str, str]) -> dict[str, str]:
        """What the step's container declares (backends/argo/steps.py `step_env`), with this
        machine's folders for the pod's: the trainer's own env, then the contract's
        variables, the parameters the step reads (and only those) base64-encoded. HOME
        stays the user's, and a cluster service the step would report to
        (`LOCAL_UNSET`) is left out: nothing here listens there."""
        env = {k: v for k, v in step.env.items() if k not in LOCAL_UNSET}
        env.update(self.environ(pipeline.name, run_id))
        env[sc.PROJECT_JSON_ENV] = str(self.project_file)
        env[sc.PIPELINE_ENV] = pipeline.name
        env[sc.STEP_ENV] = step.name
        if pipeline.model:
            env[sc.MODEL_ENV] = pipeline.model
        env.update(export_env(step))
        if step.checkpoint_path:  # a folder here, whether the pod has a volume or a bucket
            env[sc.CHECKPOINT_DIR_ENV] = str(self.state / "checkpoints" / pipeline.model) \
                if pipeline.model else str(self.state / "checkpoints" / pipeline.name)
        for name in step.parameters:
            if name in params:
                key = f"{sc.PARAM_PREFIX}{name.upper()}{sc.PARAM_B64_SUFFIX}"
                env[key] = base64.b64encode(params[name].encode("utf-8")).decode("ascii")
        return env


def prepare(root: Path, env: str, diags: Diagnostics) -> LocalProject:
    """Compile `env` and write what the steps read: project.json and the Feast repo."""
    from mlc.compiler.diagnostics import CompileFailed
    from mlc.compiler.pipeline import compile_project
    from mlc.compiler.write import write_environment

    root = root.resolve()
    compiled = compile_project(root, [env], diags)[0]
    state = root / STATE_DIR
    state.mkdir(exist_ok=True)
    # mlc owns this copy; a hand edit here is overwritten rather than refused
    written = write_environment(state / "deploy", env, compiled.files, force=True, diags=diags)
    if written is None:
        raise CompileFailed(diags)
    project_file = state / env / "project.json"
    project_file.parent.mkdir(parents=True, exist_ok=True)
    project_file.write_text(compiled.project.model_dump_json(indent=2) + "\n", "utf-8")
    repo = state / "deploy" / env / FEAST_REPO_DIR
    has_repo = f"{FEAST_REPO_DIR}/feature_store.yaml" in compiled.files
    return LocalProject(root=root, env=env, project=compiled.project, state=state,
                        project_file=project_file, feast_repo=repo if has_repo else None)


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set `values` in os.environ (Feast and MLflow read it) and restore it afterwards."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def step_environment(values: Mapping[str, str]) -> Iterator[None]:
    """One step's environment: this process's, less what belongs to one step of a pod (the
    step's identity, parameters, checkpoint settings: `STEP_SCOPED`), plus `values`. Whatever
    the step changes in os.environ is undone when it ends, so the next step starts from
    the same environment as its own pod would, not from what this one left."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key in STEP_SCOPED or key.startswith(STEP_SCOPED_PREFIXES):
            del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def captured(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C libraries and
    logging handlers too) to `log` while a step runs."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    streams = sys.stdout, sys.stderr
    text = open(fd, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = sys.stderr = text  # in case sys.stdout is not file descriptor 1
        yield
    finally:
        text.flush()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        text.close()
        for descriptor in (fd, *saved):
            os.close(descriptor)


def select_pipelines(project: ir.ResolvedProject, models: list[str] | None
                     ) -> list[ir.Pipeline]:
    """Materialisation first (training reads what `feast apply` registered), then training."""
    from mlc.runtime.step import StepFailed

    if models:
        unknown = [m for m in models if m not in project.models]
        if unknown:
            raise StepFailed(f"no model {', '.join(unknown)} (known: "
                             f"{', '.join(project.models) or 'none'})")
    chosen = [p for p in project.pipelines.values() if p.kind == "materialization"]
    chosen += [p for p in project.pipelines.values() if p.kind == "training"
               and (not models or p.model in models)]
    return chosen


def step_order(pipeline: ir.Pipeline) -> list[ir.Step]:
    """The steps in dependency order (the IR lists them so; this keeps it true)."""
    done: list[str] = []
    by_name = {s.name: s for s in pipeline.steps}
    pending = list(pipeline.steps)
    while pending:
        ready = [s for s in pending if all(d in done for d in s.depends)]
        if not ready:
            raise ValueError(f"pipeline {pipeline.name}: the steps' dependencies form a cycle")
        for s in ready:
            done.append(s.name)
            pending.remove(s)
    return [by_name[n] for n in done]


def outcome(code: int) -> tuple[str, str]:
    """How a step that exited with `code` is shown: its status and a few words."""
    from mlc.runtime.step import EXIT_BAD_DATA, EXIT_DRIFT, EXIT_GATES

    known = {EXIT_DRIFT: ("drift", "drift found"),
             EXIT_GATES: ("failed", "a gate failed"),
             EXIT_BAD_DATA: ("failed", "the data failed its checks")}
    status, words = known.get(code, ("failed", ""))
    return status, f"{words} (exit {code})" if words else f"exit {code}"


def succeeded(step: ir.Step, run_dir: Path) -> tuple[str, str]:
    """How a step that exited 0 is shown: `ok`, or the state it recorded. An A/B verdict
    short of labels succeeds (it did its job; the next run may decide) and shows WAITING."""
    if step.kind == "ab_verdict":
        recorded = run_dir / sc.VERDICT_DECISION_FILE
        decision = recorded.read_text("utf-8").strip() if recorded.is_file() else ""
        if decision == "waiting":
            return "waiting", "not enough labelled predictions yet"
    return "ok", ""


def run_pipeline(local: LocalProject, pipeline: ir.Pipeline, params: Mapping[str, str],
                 run_id: str, progress: Progress) -> int:
    """Run one pipeline's steps in order; a failed step skips the steps after it."""
    from mlc.runtime.step import EXIT_FAILED, StepFailed, build_context, run_step

    run_dir = local.state / "runs" / pipeline.name / run_id
    values = {p.name: p.default for p in pipeline.parameters}
    values.update((k, v) for k, v in params.items() if k in values)
    progress.section(f"{pipeline.name}  ({run_dir.relative_to(local.root)})")
    failed: str | None = None
    code = 0
    # a custom trainer's command runs in the working directory, as in its image: here, the
    # project folder, where its relative paths (a train.py) lie
    with contextlib.chdir(local.root):
        for step in step_order(pipeline):
            if failed is not None:
                progress.line(step.name, "skipped", detail=f"after {failed}")
                continue
            log = run_dir / "logs" / f"{step.name}.log"
            summaries.summary_file(run_dir, step.name).unlink(missing_ok=True)  # a rerun's
            progress.start(step.name)
            report, code = None, 0
            try:
                with step_environment(local.step_environ(pipeline, step, run_id, values)), \
                        contextlib.chdir(local.root), captured(log):
                    # what `python -m mlc.runtime step` does in the pod, in this process
                    ctx = build_context(local.project, pipeline.name, step.name,
                                        project_file=local.project_file)
                    try:
                        run_step(ctx)
                    except StepFailed as exc:
                        print(exc.message, file=sys.stderr)
                        raise
                    except SystemExit as exc:
                        if exc.code not in (0, None):  # exit 0 ends the pod's step as done
                            traceback.print_exc()
                            raise
                    except Exception:
                        traceback.print_exc()
                        raise
            except StepFailed as exc:
                report, code = exc.message, exc.exit_code
            except ModuleNotFoundError as exc:
                report, code = (f"this step needs the Python package `{exc.name}`: install "
                                "the runtimes with `pip install 'mlc[runtime]'`"), EXIT_FAILED
            except SystemExit as exc:  # its pod's process would have exited: its failure
                code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
                report = f"the step exited with {exc.code!r}"
            except Exception as exc:  # a bug or an unexpected library error: the log has it
                report, code = f"{type(exc).__name__}: {exc}", EXIT_FAILED
            facts = summaries.lines(summaries.read(run_dir, step.name))
            if report is None:
                progress.finish(*succeeded(step, run_dir))
                progress.block("\n".join(facts))
                continue
            status, detail = outcome(code)
            progress.finish(status, detail)
            # the summary says what the report would, in fewer lines; a step without one
            # (a crash, a missing input) shows its report
            progress.block("\n".join(facts) or report)
            progress.block(f"log: {log}")
            failed = step.name + (" found drift" if status == "drift" else " failed")
    return code if failed else 0


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")


def run(root: Path, env: str, params: Mapping[str, str], diags: Diagnostics, *,
        models: list[str] | None = None, progress: Progress | None = None) -> int:
    """`mlc run`: every materialisation and training pipeline of `env`; the exit code."""
    from mlc.runtime.step import StepFailed

    progress = progress or Progress()
    progress.say(f"mlc run: compiling {env} ...")
    local = prepare(root, env, diags)
    try:
        pipelines = select_pipelines(local.project, models)
    except StepFailed as exc:
        progress.say(f"error: {exc.message}")
        return 2
    params = dict(params)
    known = {p.name for pipe in pipelines for p in pipe.parameters}
    unknown = sorted(set(params) - known)
    if unknown:
        progress.say(f"error: no pipeline has parameter {', '.join(unknown)} (known: "
                     f"{', '.join(sorted(known)) or 'none'})")
        return 2
    params.setdefault("promote", "if-none")
    if local.feast_repo is None:
        progress.say("note: no Feast repo was generated; features are joined from the file "
                     "sources directly")
    progress.say(f"{local.project.name} ({env}): {len(pipelines)} pipelines, MLflow at "
                 f"{local.tracking_uri}")
    run_id = new_run_id()
    for pipeline in pipelines:
        code = run_pipeline(local, pipeline, params, run_id, progress)
        if code:
            return code
    summary(local, pipelines, run_id, progress)
    return 0


def summary(local: LocalProject, pipelines: list[ir.Pipeline], run_id: str,
            progress: Progress) -> None:
    for pipeline in pipelines:
        folder = local.state / "runs" / pipeline.name / run_id
        if not (folder / "register.json").is_file():
            continue
        reg = json.loads((folder / "register.json").read_text("utf-8"))
        aliases = [reg["alias"]]
        if (folder / "promote.json").is_file():
            promoted = json.loads((folder / "promote.json").read_text("utf-8"))
            if promoted["promoted"]:
                aliases.append(promoted["alias"])
            elif promoted["holder"] is not None:
                aliases.append(f"{promoted['alias']} stays on version {promoted['holder']}")
        progress.say(f"registered {reg['name']} version {reg['version']} "
                     f"(@{', @'.join(aliases)})")
    for name, endpoint in sorted(local.project.endpoints.items()):
        if endpoint.mode == "online" and endpoint.engine == "mlc":
            progress.say(f"next: mlc run serve {name}   (serves {endpoint.model_uri})")


def serve(root: Path, env: str, endpoint: str, diags: Diagnostics, *, host: str = "127.0.0.1",
          port: int | None = None) -> int:
    """`mlc run serve ENDPOINT`: the serving runtime, on this machine's registry; for a
    stream endpoint, its consumer (`stream-score`), on the brokers ml.yaml names."""
    local = prepare(root, env, diags)
    if endpoint not in local.project.endpoints:
        print(f"error: no endpoint `{endpoint}` (known: "
              f"{', '.join(local.project.endpoints) or 'none'})", file=sys.stderr)
        return 2
    mode = local.project.endpoints[endpoint].mode
    engine = local.project.endpoints[endpoint].engine
    if engine != "mlc":
        # mlc's own server would answer in the engine's place: not what the cluster runs
        print(f"error: `{endpoint}` is served by engine `{engine}` (a KServe "
              "InferenceService in the cluster, docs/serving-engines.md); `mlc run serve` "
              "runs mlc's own serving runtime only. Its model is in this machine's registry "
              f"({local.project.endpoints[endpoint].model_uri}): serve it with the engine "
              "itself", file=sys.stderr)
        return 2
    if mode == "batch":
        print(f"error: `{endpoint}` is a batch endpoint, which answers no requests: score it "
              f"with `mlc run score {endpoint}`", file=sys.stderr)
        return 2
    if mode == "stream":
        return _stream_score(local, endpoint)
    try:
        from mlc.runtime.serve.server import main as serve_main
    except ModuleNotFoundError as exc:
        print(f"error: the serving runtime is not available here ({exc.name}); install "
              "mlc[serve]", file=sys.stderr)
        return 1
    values = local.environ()
    values["MLC_PREDICTION_LOG_URI"] = str(local.state / "predictions" / endpoint)
    argv = ["--project", str(local.project_file), "--endpoint", endpoint, "--host", host]
    if port is not None:
        argv += ["--port", str(port)]
    with environment(values):
        return serve_main(argv) or 0


def _stream_score(local: LocalProject, endpoint: str) -> int:
    """A stream endpoint's consumer, as its Deployment runs it, on this machine's registry:
    it reads the topic from the brokers ml.yaml names (a local broker in a dev overlay, say)
    until Ctrl-C. Credentials come from this shell's environment, under the names the pod's
    Secrets fill (MLC_KAFKA_SASL_USERNAME, ...: docs/streams.md)."""
    try:
        from mlc.runtime.stream_score.command import main as stream_main
    except ModuleNotFoundError as exc:
        print(f"error: the stream scorer is not available here ({exc.name}); install "
              "mlc[serve,streams]", file=sys.stderr)
        return 1
    with environment(local.environ()):
        return stream_main(["--project", str(local.project_file), "--endpoint", endpoint])


def ingest(root: Path, env: str, source: str, diags: Diagnostics) -> int:
    """`mlc run ingest SOURCE`: a Kafka source's ingestion, as its Deployment runs it, into
    this machine's Feast repo (applied first, as the pipeline's feature-apply step does),
    from the brokers ml.yaml names, until Ctrl-C; credentials as for `run serve` of a
    stream endpoint."""
    local = prepare(root, env, diags)
    if source not in local.project.ingestions:
        print(f"error: no Kafka source `{source}` to ingest (known: "
              f"{', '.join(sorted(local.project.ingestions)) or 'none'})", file=sys.stderr)
        return 2
    try:
        from mlc.runtime.features import apply_repo
        from mlc.runtime.ingest.command import main as ingest_main
    except ModuleNotFoundError as exc:
        print(f"error: the ingestion runtime is not available here ({exc.name}); install "
              "mlc[serve,streams]", file=sys.stderr)
        return 1
    with environment(local.environ()):
        apply_repo(local.feast_repo)
        return ingest_main(["--project", str(local.project_file), "--source", source])


def drift(root: Path, env: str, check: str, diags: Diagnostics, *,
          progress: Progress | None = None) -> int:
    """`mlc run drift CHECK`: the check's pipeline, reading what `mlc run serve` logged."""
    local = prepare(root, env, diags)
    return _monitor(local, "drift check", check, local.project.drift_checks,
                    progress or Progress())


def quality(root: Path, env: str, monitor: str, diags: Diagnostics, *,
            progress: Progress | None = None) -> int:
    """`mlc run quality MONITOR`: the quality monitor's pipeline, joining what `mlc run
    serve` logged with the monitor's labels source as the cluster's CronWorkflow does."""
    local = prepare(root, env, diags)
    return _monitor(local, "quality monitor", monitor, local.project.quality_monitors,
                    progress or Progress())


def _monitor(local, kind: str, name: str, known: Mapping, progress: Progress) -> int:
    """A monitor's pipeline (a drift check's, a quality monitor's) on this machine, over the
    prediction log that `mlc run serve` wrote for its endpoint."""
    found = known.get(name)
    if found is None:
        progress.say(f"error: no {kind} `{name}` (known: {', '.join(known) or 'none'})")
        return 2
    pipeline = local.project.pipelines[found.pipeline]
    endpoint = found.endpoint
    values = {"MLC_PREDICTION_LOG_URI": str(local.state / "predictions" / endpoint)} \
        if endpoint else {}
    with environment(values):
        return run_pipeline(local, pipeline, {}, new_run_id(), progress)


def score(root: Path, env: str, endpoint: str, params: Mapping[str, str],
          diags: Diagnostics, *, progress: Progress | None = None) -> int:
    """`mlc run score ENDPOINT`: the batch endpoint's scoring pipeline, on this machine's
    registry and Feast repo (run `mlc run` first: it trains and registers the model). An
    output in an object store is written under .mlc/scores/<endpoint>/ instead."""
    from mlc.runtime.serve.batch import OUTPUT_ENV

    progress = progress or Progress()
    local = prepare(root, env, diags)
    found = local.project.endpoints.get(endpoint)
    if found is None or found.batch is None or found.pipeline is None:
        batch = [n for n, e in sorted(local.project.endpoints.items()) if e.batch]
        progress.say(f"error: no batch endpoint `{endpoint}` (known: "
                     f"{', '.join(batch) or 'none'})")
        return 2
    pipeline = local.project.pipelines[found.pipeline]
    known = {p.name for p in pipeline.parameters}
    unknown = sorted(set(params) - known)
    if unknown:
        progress.say(f"error: pipeline {pipeline.name} has no parameter {', '.join(unknown)} "
                     f"(known: {', '.join(sorted(known))})")
        return 2
    values = {}
    output = found.batch.output
    if "://" in output:
        path = output.split("://", 1)[1].partition("/")[2]
        values[OUTPUT_ENV] = str(local.state / "scores" / endpoint / path) + \
            ("/" if output.endswith("/") else "")
        progress.say(f"note: {output} is written to {values[OUTPUT_ENV]} on this machine")
    with environment(values):
        return run_pipeline(local, pipeline, params, new_run_id(), progress)
