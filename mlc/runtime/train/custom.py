"""Custom training: the user's command gets the builtin trainer's contract, and its results
are tracked the same way.

The train step builds the same data snapshot as the builtin trainer, opens the MLflow run
with the same lineage tags, then runs `training.custom.command + args` with:

    MLC_TRAIN_DATA       the snapshot (parquet): entity keys, event time, label, features,
                         and __split__ = train | test (test rows are for evaluation only)
    MLC_FEATURES         JSON list of the input columns, in order
    MLC_LABEL, MLC_TASK  the label column; classification | regression
    MLC_HYPERPARAMETERS  JSON object (the run's `hyperparameters` parameter)
    MLC_MODEL_DIR        where to save the model with mlc.runtime.model_format.save_model
    MLC_METRICS_FILE     optional JSON the command writes: {"name": value} or
                         {"name": [[step, value], ...]}
    MLC_CHECKPOINT_DIR   a folder for the command's own checkpoints (when ml.yaml names one)
    MLFLOW_TRACKING_URI, MLFLOW_RUN_ID, MLFLOW_EXPERIMENT_ID   the run, to log more into it
    MLC_RUN_DIR, MLC_PROJECT_JSON, MLC_MODEL, MLC_PARAM_<NAME>, and `training.custom.env`

When the command succeeds, its metrics and model are logged like the builtin trainer's, so
evaluation, registration and serving treat both alike. In a cluster the step runs in the
user's image, which must contain mlc (e.g. `FROM` the mlc-train image).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

from mlc.runtime import model_format
from mlc.runtime.step import StepContext, StepFailed


def contract_env(ctx: StepContext, dataset, run) -> dict[str, str]:
    model = ctx.model
    run_dir = ctx.run_dir.resolve()
    env = {
        **model.training.env,
        "MLC_TRAIN_DATA": str(run_dir / "data" / "dataset.parquet"),
        "MLC_FEATURES": json.dumps(dataset.features),
        "MLC_LABEL": dataset.label,
        "MLC_TASK": model.task,
        "MLC_HYPERPARAMETERS": ctx.param("hyperparameters", "{}") or "{}",
        "MLC_MODEL_DIR": str(run_dir / "model"),
        "MLC_METRICS_FILE": str(run_dir / "custom-metrics.json"),
        "MLC_RUN_DIR": str(run_dir),
        "MLC_MODEL": model.name,
        "MLFLOW_TRACKING_URI": ctx.mlflow_tracking_uri,
        "MLFLOW_RUN_ID": run.run_id,
        "MLFLOW_EXPERIMENT_ID": run.experiment_id,
    }
    if ctx.project_file is not None:
        env["MLC_PROJECT_JSON"] = str(ctx.project_file.resolve())
    if ctx.checkpoint_dir is not None:
        env["MLC_CHECKPOINT_DIR"] = str(ctx.checkpoint_dir)
    for name, value in ctx.params.items():
        env[f"MLC_PARAM_{name.upper()}"] = value
    return env


def _log_metrics(run, path) -> int:
    from mlflow.entities import Metric

    if not path.is_file():
        return 0
    try:
        reported = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise StepFailed(f"{path} is not JSON: {exc}") from exc
    stamp = int(time.time() * 1000)
    metrics = []
    for key, value in sorted(reported.items()):
        points = value if isinstance(value, list) else [[0, value]]
        for step, number in points:
            if isinstance(number, int | float) and math.isfinite(number):
                metrics.append(Metric(str(key), float(number), stamp, int(step)))
    for i in range(0, len(metrics), 1000):
        run.client.log_batch(run.run_id, metrics=metrics[i:i + 1000], synchronous=True)
    return len(metrics)


def run_custom(ctx: StepContext) -> None:
    from mlc.runtime.train import data, tracking
    from mlc.runtime.train.trainer import TRAIN_FILE, write_json

    model = ctx.model
    training = model.training
    command = [*training.command, *training.args]
    if not command:
        raise StepFailed(f"model `{model.name}` has custom training with no command")
    dataset = data.build_dataset(ctx, model)
    run = tracking.TrackedRun.open(ctx, model, dataset, trainer="custom")
    run.log_params({"command": " ".join(command)}, dataset)
    env = {**os.environ, **contract_env(ctx, dataset, run)}
    started = time.perf_counter()
    print(f"running {' '.join(command)}", flush=True)
    sys.stdout.flush()
    try:
        done = subprocess.run(command, env=env, cwd=str(ctx.data_root), check=False)
    except OSError as exc:
        run.finish({}, status="FAILED")
        raise StepFailed(f"cannot start the training command `{command[0]}`: {exc}") from exc
    if done.returncode != 0:
        run.finish({}, status="FAILED")
        raise StepFailed(f"the training command exited with {done.returncode}: "
                         f"{' '.join(command)}")
    logged = _log_metrics(run, ctx.run_dir / "custom-metrics.json")
    folder = ctx.run_dir / "model"
    try:
        spec = model_format.load_spec(folder)
    except (FileNotFoundError, ValueError) as exc:
        run.finish({}, status="FAILED")
        raise StepFailed(f"the training command left no model in {folder} ({exc}); save one "
                         "with mlc.runtime.model_format.save_model") from exc
    model_uri = run.log_model(folder, dataset, spec)
    summary = {"mlflow_run_id": run.run_id, "experiment_id": run.experiment_id,
               "model_uri": model_uri, "data_snapshot": dataset.snapshot, "trainer": "custom",
               "command": command, "metrics_logged": logged,
               "seconds": round(time.perf_counter() - started, 3)}
    run.finish(summary)
    write_json(ctx.run_dir / TRAIN_FILE, summary)
    print(f"custom training of {model.name} done; MLflow run {run.run_id}")
