"""Custom training: the user's command gets the builtin trainer's contract, and its results
are tracked the same way.

The train step builds the same data snapshot as the builtin trainer, opens the MLflow run
with the same lineage tags, then runs `training.custom.command + args` with the variables of
mlc/step_contract.py (docs/training-contract.md): the pod's own, plus MLC_TRAIN_DATA,
MLC_FEATURES, MLC_LABEL, MLC_TASK, MLC_HYPERPARAMETERS, MLC_MODEL_DIR, MLC_METRICS_FILE,
MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID. The same code runs in a cluster (every pod runs
`python -m mlc.runtime step`, so the user's image must contain mlc, e.g. `FROM` the mlc-train
image) and under `mlc run`.

The model is either an mlc model saved into MLC_MODEL_DIR (logged here like the builtin
trainer's), or any MLflow model the command logged into MLFLOW_RUN_ID itself (sklearn,
xgboost, pyfunc, ...): evaluation scores it through mlflow.pyfunc, and registration and
promotion treat both alike. Metrics the command writes to MLC_METRICS_FILE are logged to the
run; the last value of each metric declared in `training.custom.metrics` goes to train.json,
where the gates find it.

A model trained on a `dataset` (`task: generative | custom`, docs/llm.md) gets no rows: the
command gets MLC_DATASET_URI, MLC_DATASET_KIND and MLC_DATASET_FORMAT and reads the data
itself, must log an MLflow model (transformers, pyfunc, ...), and its declared metrics are its
whole evaluation.

On several nodes (a JobSet, `nodes > 1`) every node's pod runs this step and the command;
node 0 (PET_NODE_RANK) builds the data and owns the MLflow run, the model and train.json.
The other nodes wait for node 0's data snapshot in the shared run folder and run the command
without MLFLOW_RUN_ID: what they log or save is not the run's.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from mlc import step_contract as sc
from mlc.runtime import model_format
from mlc.runtime.step import StepContext, StepFailed, write_record

RANK_ENV = "PET_NODE_RANK"
FOLLOWER_POLL_SECONDS = 2.0


def contract_env(ctx: StepContext, dataset, run) -> dict[str, str]:
    """The variables the step runtime adds for the command (step_contract, set_by=runtime),
    and the ones the pod had in another form (parameters decoded, paths made absolute)."""
    model = ctx.model
    run_dir = ctx.run_dir.resolve()
    env = {
        sc.TASK_ENV: model.task,
        sc.HYPERPARAMETERS_ENV: ctx.param("hyperparameters", "{}") or "{}",
        sc.MODEL_DIR_ENV: str(run_dir / sc.MODEL_DIR),
        sc.METRICS_FILE_ENV: str(run_dir / sc.CUSTOM_METRICS_FILE),
        sc.PIPELINE_ENV: ctx.pipeline.name,
        sc.STEP_ENV: ctx.step.name,
        sc.RUN_ID_ENV: ctx.run_id,
        sc.RUN_DIR_ENV: str(run_dir),
        sc.DATA_ROOT_ENV: str(ctx.data_root.resolve()),
        sc.MODEL_ENV: model.name,
        sc.TRACKING_URI_ENV: ctx.mlflow_tracking_uri,
    }
    if dataset is not None:  # a tabular model: the point-in-time rows node 0 built
        env.update({sc.TRAIN_DATA_ENV: str(run_dir / sc.DATASET_FILE),
                    sc.FEATURES_ENV: json.dumps(dataset.features), sc.LABEL_ENV: dataset.label})
    if model.dataset is not None:  # a generative or custom model: its data, where it is
        env.update(dataset_env(model.dataset, ctx.data_root))
    if run is not None:  # node 0, or the only node
        env[sc.RUN_ID_MLFLOW_ENV] = run.run_id
        env[sc.EXPERIMENT_ID_ENV] = run.experiment_id
    if ctx.project_file is not None:
        env[sc.PROJECT_JSON_ENV] = str(ctx.project_file.resolve())
    if ctx.checkpoint_dir is not None:
        env[sc.CHECKPOINT_DIR_ENV] = str(ctx.checkpoint_dir)
    for name, value in ctx.params.items():
        env[f"{sc.PARAM_PREFIX}{name.upper()}"] = value
    return env


def dataset_env(d, data_root: Path) -> dict[str, str]:
    """MLC_DATASET_*: an object-store URI as ml.yaml writes it, a relative path made
    absolute against the data root (the project folder under `mlc run`)."""
    uri = d.uri if "://" in d.uri or Path(d.uri).is_absolute() \
        else str((data_root / d.uri).resolve())
    env = {sc.DATASET_URI_ENV: uri, sc.DATASET_KIND_ENV: d.kind}
    if d.format:
        env[sc.DATASET_FORMAT_ENV] = d.format
    return env


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """MLC_METRICS_FILE as {name: [(step, value), ...]}, finite values only."""
    if not path.is_file():
        return {}
    try:
        reported = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise StepFailed(f"{path} is not JSON: {exc}") from exc
    if not isinstance(reported, dict):
        raise StepFailed(f"{path} must hold a JSON object of metric names")
    out: dict[str, list[tuple[int, float]]] = {}
    for key, value in sorted(reported.items()):
        points = value if isinstance(value, list) else [[0, value]]
        for point in points:
            if not (isinstance(point, list | tuple) and len(point) == 2):
                raise StepFailed(f"{path}: metric `{key}` must be a number or a list of "
                                 f"[step, value] pairs, got {point!r}")
            step, number = point
            if isinstance(number, int | float) and not isinstance(number, bool) \
                    and math.isfinite(number):
                out.setdefault(str(key), []).append((int(step), float(number)))
    return out


def _log_metrics(run, reported: dict[str, list[tuple[int, float]]]) -> int:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    metrics = [Metric(key, value, stamp, step) for key, points in reported.items()
               for step, value in points]
    for i in range(0, len(metrics), 1000):
        run.client.log_batch(run.run_id, metrics=metrics[i:i + 1000], synchronous=True)
    return len(metrics)


def final_values(model, reported: dict[str, list[tuple[int, float]]]) -> dict[str, float]:
    """The declared metrics' values at their last step: what the gates compare."""
    out = {}
    for metric in model.training.metrics:
        points = reported.get(metric.name)
        if points:
            out[metric.name] = max(points, key=lambda p: p[0])[1]
    return out


def logged_model_uri(run) -> str | None:
    """The model the command logged into the run (any flavour); None when it logged none."""
    models = [m for m in run.client.search_logged_models(
        experiment_ids=[run.experiment_id], filter_string=f"source_run_id = '{run.run_id}'")
        if m.source_run_id == run.run_id]
    if not models:
        return None
    if len(models) > 1:
        names = ", ".join(sorted(m.name for m in models))
        raise StepFailed(f"the training command logged {len(models)} models ({names}) into "
                         "the run; log exactly one, the model to evaluate and register")
    return models[0].model_uri


def node_rank() -> int:
    value = os.environ.get(RANK_ENV, "0") or "0"
    try:
        return int(value)
    except ValueError as exc:
        raise StepFailed(f"{RANK_ENV} must be a number, got `{value}`") from exc


def run_command(command: list[str], env: dict[str, str]) -> int:
    """The user's command, in this process's working directory (the image's WORKDIR in a
    pod, the project folder under `mlc run`), so relative paths mean what the image says."""
    print(f"running {' '.join(command)}", flush=True)
    sys.stdout.flush()
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except OSError as exc:
        raise StepFailed(f"cannot start the training command `{command[0]}`: {exc}") from exc


def run_follower(ctx: StepContext, command: list[str], rank: int) -> None:
    """A node other than 0: node 0's data, the command, nothing tracked."""
    from mlc.runtime.train import data

    if ctx.model.dataset is not None:  # the trainer reads the dataset itself: no wait
        code = run_command(command, {**os.environ, **contract_env(ctx, None, None)})
        if code != 0:
            raise StepFailed(f"node {rank}: the training command exited with {code}: "
                             f"{' '.join(command)}")
        print(f"node {rank}: the training command is done; node 0 records the run")
        return
    deadline = time.monotonic() + ctx.step.timeout_seconds
    while True:
        try:
            dataset = data.load_dataset(ctx)
            break
        except (StepFailed, OSError, ValueError):  # not written yet, or being replaced
            if time.monotonic() > deadline:
                raise StepFailed(f"node {rank}: node 0 wrote no training data in "
                                 f"{ctx.run_dir} before the step's timeout") from None
            time.sleep(FOLLOWER_POLL_SECONDS)
    env = {**os.environ, **contract_env(ctx, dataset, None)}
    code = run_command(command, env)
    if code != 0:
        raise StepFailed(f"node {rank}: the training command exited with {code}: "
                         f"{' '.join(command)}")
    print(f"node {rank}: the training command is done; node 0 records the run")


def endpoints_refusing_pickle(project, model: str) -> list[str]:
    """The endpoints that serve `model` and would refuse a model not in mlc's format: found
    at training, before such a version is registered and promoted to them. Only mlc's own
    runtime loads the model through MLflow's pickles; another engine reads its own format."""
    return sorted(name for name, e in project.endpoints.items()
                  if e.model == model and not e.allow_pickle and e.engine == "mlc")


def run_custom(ctx: StepContext) -> None:
    from mlc.runtime.train import data, tracking

    model = ctx.model
    training = model.training
    command = [*training.command, *training.args]
    if not command:
        raise StepFailed(f"model `{model.name}` has custom training with no command")
    rank = node_rank()
    if rank:
        run_follower(ctx, command, rank)
        return
    # a dataset model's trainer reads its data itself; a tabular one gets node 0's rows
    dataset = data.build_dataset(ctx, model) if model.dataset is None else None
    run = tracking.TrackedRun.open(ctx, model, dataset, trainer="custom")
    params = {"command": " ".join(command)}
    if model.dataset is not None:
        params.update(dataset=model.dataset.uri, dataset_kind=model.dataset.kind)
    run.log_params(params, dataset)
    env = {**os.environ, **contract_env(ctx, dataset, run)}
    started = time.perf_counter()
    try:
        code = run_command(command, env)
    except StepFailed:
        run.finish({}, status="FAILED")
        raise
    if code != 0:
        run.finish({}, status="FAILED")
        raise StepFailed(f"the training command exited with {code}: {' '.join(command)}")
    reported = read_metrics(ctx.run_dir / sc.CUSTOM_METRICS_FILE)
    logged = _log_metrics(run, reported)
    folder = ctx.run_dir / sc.MODEL_DIR
    if (folder / model_format.SPEC_FILE).is_file() and model.dataset is not None:
        run.finish({}, status="FAILED")
        raise StepFailed(f"the training command saved an mlc model into {folder}, a format "
                         "for feature rows; a model trained on a dataset logs an MLflow model "
                         f"(e.g. mlflow.transformers, mlflow.pyfunc) into {sc.RUN_ID_MLFLOW_ENV}")
    if (folder / model_format.SPEC_FILE).is_file():
        try:
            spec = model_format.load_spec(folder)
        except ValueError as exc:
            run.finish({}, status="FAILED")
            raise StepFailed(f"the model in {folder} cannot be read: {exc}") from exc
        model_uri, flavour = run.log_model(folder, dataset, spec), "mlc"
    else:
        model_uri, flavour = logged_model_uri(run), "mlflow"
        if model_uri is None:
            run.finish({}, status="FAILED")
            raise StepFailed(f"the training command left no model: save one into {folder} "
                             "with mlc.runtime.model_format.save_model, or log an MLflow "
                             f"model (any flavour) into the run {sc.RUN_ID_MLFLOW_ENV}")
        refusing = endpoints_refusing_pickle(ctx.project, model.name)
        if refusing:
            run.finish({}, status="FAILED")
            raise StepFailed(
                "the training command logged an MLflow model, not one in mlc's format, and "
                f"endpoint{'s' if len(refusing) > 1 else ''} {', '.join(refusing)} would "
                "refuse to load it (loading it unpickles and runs its code): set "
                "`allowPickle: true` on the endpoint in ml.yaml, or save the model with "
                "mlc.runtime.model_format.save_model")
    summary = {"mlflow_run_id": run.run_id, "experiment_id": run.experiment_id,
               "model_uri": model_uri, "model_format": flavour,
               "data_snapshot": dataset.snapshot if dataset is not None else None,
               "dataset": model.dataset.uri if model.dataset is not None else None,
               "trainer": "custom", "command": command,
               "metrics_logged": logged, "custom_metrics": final_values(model, reported),
               "seconds": round(time.perf_counter() - started, 3)}
    run.finish(summary)
    write_record(ctx.run_dir / sc.TRAIN_FILE, summary)
    print(f"custom training of {model.name} done; MLflow run {run.run_id}")
