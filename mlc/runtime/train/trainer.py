"""The training step, and the bundled torch trainer: an MLP for tabular classification
and regression. The step dispatches on the model's framework: `torch` trains here, `xgboost`,
`lightgbm` and `sklearn` in mlc/runtime/train/trainers/ (docs/trainers.md).

    dataset (data.py)  ->  arrays + spec stats  ->  fit (checkpointed)  ->  model folder
                                                                        ->  MLflow run + model

Reproducible: every random choice comes from the `seed` hyperparameter (initial weights,
the validation rows, each epoch's batch order), the data snapshot's hash is recorded, and
a run resumed from a checkpoint ends with the same weights as one never interrupted. Runs
on the GPU when there is one (the whole table lives on the device: these are small
tables), with mixed precision where the hardware has it (`mixedPrecision: auto` = bf16, or
fp16 with loss scaling, on CUDA; off on the CPU).

Custom training (`training.custom`) hands the same data and contract to the user's command
(custom.py) and tracks its results the same way.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from mlc import step_contract as sc
from mlc.runtime import model_format
from mlc.runtime.step import StepContext, StepFailed, write_record
from mlc.runtime.train.checkpoints import CheckpointStore, fingerprint, rng_state, set_rng_state
from mlc.runtime.train.exports import log_exports, requested_exports

if TYPE_CHECKING:  # pandas and pyarrow stay unimported for callers of `fit` alone
    from mlc.runtime.train.data import Dataset

TRAIN_FILE = sc.TRAIN_FILE
MODEL_DIR = sc.MODEL_DIR
REFERENCE_ROWS = 5000
DEFAULTS: dict[str, Any] = {
    "hidden_layers": [64, 32], "epochs": 10, "batch_size": 256, "learning_rate": 1e-3,
    "weight_decay": 0.0, "dropout": 0.0, "seed": 42, "validation_split": 0.2,
    "mixed_precision": "auto",
}


@dataclass(frozen=True)
class Arrays:
    x_fit: np.ndarray  # float32, already prepared (filled, standardised)
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@dataclass
class FitResult:
    state_dict: dict[str, torch.Tensor]
    steps: int
    resumed_from: int  # the checkpoint's step, 0 for a fresh start
    device: str
    precision: str
    seconds: float
    history: list[dict[str, float]]  # one entry per epoch: validation metrics


# ---------------------------------------------------------------------------------------
# Settings


def hyperparameters(base: dict[str, Any], override_json: str) -> dict[str, Any]:
    """ml.yaml's hyperparameters over the defaults, then the run's `hyperparameters`
    parameter (a JSON object), read as every bundled trainer reads it."""
    from mlc.runtime.train.trainers import hyperparameters as with_override

    return with_override({**DEFAULTS, **base}, override_json)


def select_device() -> torch.device:
    wanted = os.environ.get("MLC_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def precision(mode: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether to scale the loss) for `mixedPrecision`."""
    if mode == "off":
        return None, False
    if device.type == "cuda":
        if mode in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            return torch.bfloat16, False
        return torch.float16, True  # fp16 needs loss scaling to keep small gradients
    if mode == "bf16":
        return torch.bfloat16, False  # CPU autocast supports bf16
    if mode == "fp16":
        print("mixedPrecision fp16 needs a GPU; training in fp32", file=sys.stderr)
    return None, False


def seed_everything(seed: int, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cuda":
        # cuBLAS needs this set before its first use to be deterministic. On the CPU the
        # MLP's kernels are deterministic already, and the switch below would import
        # torch's compiler stack (seconds) for nothing.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


# ---------------------------------------------------------------------------------------
# Data -> arrays and the spec's statistics


def prepare(dataset: Dataset, task: str, hp: dict[str, Any], *,
            extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], Arrays]:
    train = dataset.part("train")
    if len(train) < 2:
        raise StepFailed(f"only {len(train)} training rows: nothing to learn from")
    raw = train[dataset.features].to_numpy(dtype=np.float64)
    raw = np.where(np.isfinite(raw), raw, np.nan)
    labels = train[dataset.label].to_numpy()
    rng = np.random.default_rng(hp["seed"])
    n_val = int(round(len(train) * hp["validation_split"]))
    order = rng.permutation(len(train))
    val_idx, fit_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    fit = raw[fit_idx]
    with np.errstate(all="ignore"):
        fill = np.nan_to_num(np.nanmean(fit, axis=0), nan=0.0)
        filled = np.where(np.isnan(fit), fill, fit)
        mean, std = filled.mean(axis=0), filled.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    common = dict(task=task, features=dataset.features, feature_refs=dataset.feature_refs,
                  hidden_layers=list(hp["hidden_layers"]), dropout=float(hp["dropout"]),
                  fill=fill.tolist(), mean=mean.tolist(), std=std.tolist(),
                  label=dataset.label, extra=extra)
    if task == "classification":
        classes = sorted(np.unique(labels[fit_idx]).tolist())
        if len(classes) < 2:
            raise StepFailed(f"the training rows hold one value of `{dataset.label}` "
                             f"({classes[0] if classes else 'none'}): nothing to classify")
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index.get(v, -1) for v in labels.tolist()], dtype=np.int64)
        spec = model_format.make_spec(**common, classes=classes)
    else:
        y_raw = labels.astype(np.float64)
        t_mean, t_std = float(y_raw[fit_idx].mean()), float(y_raw[fit_idx].std() or 1.0)
        y = ((y_raw - t_mean) / t_std).astype(np.float32)
        spec = model_format.make_spec(**common, target_mean=t_mean, target_std=t_std)
    x = model_format.prepare(spec, raw)
    keep_val = val_idx[y[val_idx] >= 0] if task == "classification" else val_idx
    return spec, Arrays(x[fit_idx], y[fit_idx], x[keep_val], y[keep_val])


# ---------------------------------------------------------------------------------------
# The loop


def _loss_fn(spec: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if spec["task"] == "regression":
        mse = nn.MSELoss()
        return lambda out, y: mse(out[:, 0].float(), y)
    if spec["architecture"]["output_dim"] == 1:
        bce = nn.BCEWithLogitsLoss()
        return lambda out, y: bce(out[:, 0].float(), y.float())
    ce = nn.CrossEntropyLoss()
    return lambda out, y: ce(out.float(), y)


def fit(spec: dict[str, Any], arrays: Arrays, hp: dict[str, Any], *,
        device: torch.device | None = None, store: CheckpointStore | None = None,
        every: int = 500, logger=None, on_step: Callable[[int], None] | None = None,
        validate: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None
        ) -> FitResult:
    """Train from scratch, or from the newest checkpoint in `store`; see the module doc."""
    started = time.perf_counter()
    device = device or select_device()
    seed = int(hp["seed"])
    seed_everything(seed, device)
    model = model_format.build_module(spec).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(hp["learning_rate"]),
                                  weight_decay=float(hp["weight_decay"]))
    n, batch = len(arrays.x_fit), int(hp["batch_size"])
    per_epoch = max(math.ceil(n / batch), 1)
    epochs = int(hp["epochs"])
    total = epochs * per_epoch
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    amp_dtype, scale = precision(str(hp["mixed_precision"]), device)
    scaler = torch.amp.GradScaler(device.type, enabled=scale)
    loss_fn = _loss_fn(spec)
    x = torch.from_numpy(arrays.x_fit).to(device)
    y = torch.from_numpy(arrays.y_fit).to(device)

    step, epoch0, batch0, resumed = 0, 0, 0, 0
    if store is not None and (ckpt := store.latest()) is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        step, epoch0, batch0 = ckpt["step"], ckpt["epoch"], ckpt["batch"]
        resumed = step
        print(f"resumed from the checkpoint of step {step} ({store.where})", file=sys.stderr)

    def checkpoint(epoch: int, next_batch: int) -> None:
        store.save(step, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "rng": rng_state(), "step": step, "epoch": epoch, "batch": next_batch,
        })

    history: list[dict[str, float]] = []
    for epoch in range(epoch0, epochs):
        # each epoch's order depends on the seed and the epoch only: a resumed run redraws it
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003
                                                                          + epoch))
        model.train()
        for b in range(batch0 if epoch == epoch0 else 0, per_epoch):
            idx = order[b * batch:(b + 1) * batch].to(device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            if logger is not None:
                logger.log("train_loss", loss, step)
            if store is not None and step % every == 0:
                checkpoint(epoch, b + 1)
            if on_step is not None:
                on_step(step)
        if validate is not None and len(arrays.x_val):
            metrics = validate(*_evaluate(model, spec, arrays, device))
            metrics = {f"val_{k}": v for k, v in metrics.items()}
            history.append({"epoch": epoch + 1, **metrics})
            if logger is not None:
                for key, value in metrics.items():
                    if math.isfinite(value):
                        logger.log(key, value, step)
    model.eval()
    label = "fp32" if amp_dtype is None else str(amp_dtype).removeprefix("torch.")
    return FitResult(state_dict={k: v.detach().cpu().clone()
                                 for k, v in model.state_dict().items()},
                     steps=step, resumed_from=resumed, device=str(device), precision=label,
                     seconds=time.perf_counter() - started, history=history)


@torch.no_grad()
def _evaluate(model: nn.Module, spec: dict[str, Any], arrays: Arrays, device: torch.device
              ) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    out = model(torch.from_numpy(arrays.x_val).to(device)).float().cpu().numpy()
    predictions = model_format.outputs_to_predictions(spec, out)
    if spec["task"] == "regression":
        truth = arrays.y_val * spec["target_std"] + spec["target_mean"]
    else:
        truth = np.asarray(spec["classes"], dtype=object)[arrays.y_val]
    model.train()
    return truth, predictions


# ---------------------------------------------------------------------------------------
# The step


def run(ctx: StepContext) -> None:
    model = ctx.model
    if model.training.kind == "custom":
        from mlc.runtime.train.custom import run_custom

        if ctx.exports.get(sc.EXPORTS_ENV):  # the compiler refuses this (MLC332)
            raise StepFailed(f"{sc.EXPORTS_ENV} asks for exports of a custom-trained model: "
                             "mlc exports only the models of its builtin trainer")

        run_custom(ctx)
        return
    from mlc.runtime.train import metric_log, threads

    if model.task == "ranking" and model.framework not in ("xgboost", "lightgbm"):
        # the compiler refuses this (MLC335): the MLP would fit a regression on the grades
        raise StepFailed(f"framework `{model.framework}` has no ranking objective: train a "
                         "ranking model with xgboost or lightgbm")
    # a metrics process starts first: it imports MLflow while the data loads
    sink = metric_log.start_sink(ctx.mlflow_tracking_uri,
                                 threads.step_cpus(ctx.project, ctx.step))
    try:
        if model.framework == "torch":
            _train_builtin(ctx, sink)
        else:  # xgboost, lightgbm, sklearn: mlc/runtime/train/trainers/
            from mlc.runtime.train import trainers

            trainers.train(ctx, sink)
    finally:
        sink.stop()


def _train_builtin(ctx: StepContext, sink) -> None:
    from mlc.runtime.train import data, evaluation, metric_log, tracking

    model = ctx.model
    exports = requested_exports(ctx)  # a bad setting fails before the training, not after
    dataset = data.build_dataset(ctx, model)
    hp = hyperparameters(model.training.hyperparameters, ctx.param("hyperparameters"))
    run = tracking.TrackedRun.open(ctx, model, dataset, trainer="builtin")
    if model.training.search is not None:
        hp.update(best_trial_values(run, model.training.search))
    lineage = {"model": model.name, "project": ctx.project.name, "env": ctx.project.env,
               "source_hash": ctx.project.source_hash, "data_snapshot": dataset.snapshot,
               "feature_service": model.feature_service}
    spec, arrays = prepare(dataset, model.task, hp, extra=lineage)
    store = checkpoint_store(ctx, dataset.snapshot, hp, spec)
    run.log_params(hp, dataset)
    logger = metric_log.BackgroundLogger(sink, run.run_id)
    try:
        result = fit(spec, arrays, hp, store=store, every=model.training.checkpoint_every_steps,
                     logger=logger, validate=evaluation.metric_function(model.task, spec))
    except BaseException:
        logger.flush()  # what was logged before the failure is kept
        raise
    logger.flush()  # the sink stores the tail while the model is saved and logged
    folder = ctx.run_dir / MODEL_DIR
    module = model_format.build_module(spec)
    module.load_state_dict(result.state_dict)
    model_format.save_model(folder, spec, result.state_dict,
                            reference=reference_sample(dataset, spec, module, int(hp["seed"])))
    model_uri = run.log_model(folder, dataset, spec)
    if exports:
        log_exports(ctx, run, folder, *exports)
    logger.close()
    summary = {"mlflow_run_id": run.run_id, "experiment_id": run.experiment_id,
               "model_uri": model_uri, "data_snapshot": dataset.snapshot,
               "steps": result.steps, "resumed_from": result.resumed_from,
               "device": result.device, "precision": result.precision,
               "fit_seconds": round(result.seconds, 3), "history": result.history,
               "trainer": "builtin"}
    run.finish(summary)
    write_record(ctx.run_dir / TRAIN_FILE, summary)
    if store is not None:
        store.clear()
    last = result.history[-1] if result.history else {}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "epoch")
    print(f"trained {model.name}: {result.steps} steps on {result.device} ({result.precision})"
          f"{', resumed from step ' + str(result.resumed_from) if result.resumed_from else ''}"
          f"; {shown}; MLflow run {run.run_id}")


def best_trial_values(run, search) -> dict[str, Any]:
    """The search's best trial (its child runs of `run`): its values, tagged on the run."""
    from mlc.runtime.train import search_runs as sr

    top = sr.best(search, sr.trials(run.client, run.experiment_id, run.run_id))
    if top is None:
        raise StepFailed("the search has no completed trial: run the search step first")
    run.client.set_tag(run.run_id, sr.TAG_BEST_TRIAL, str(top.number))
    run.client.set_tag(run.run_id, sr.TAG_BEST_VALUE, repr(top.value))
    values = sr.decode(search, top.drawn)
    print(f"training with trial {top.number}'s values ({search.metric} {top.value:.4f}): "
          + ", ".join(f"{k}={v}" for k, v in values.items()))
    return values


def checkpoint_store(ctx: StepContext, snapshot: str, hp: dict[str, Any],
                     spec: dict[str, Any]) -> CheckpointStore | None:
    location = ctx.checkpoint_dir or ctx.checkpoint_uri
    if location is None:
        return None
    arch = {k: spec[k] for k in ("architecture", "features", "task", "classes")}
    return CheckpointStore(location, fingerprint(snapshot, hp, arch))


def reference_sample(dataset: Dataset, spec: dict[str, Any], module: nn.Module, seed: int):
    """Up to REFERENCE_ROWS training inputs and the model's predictions for them: the drift
    check's reference when it compares with the training data."""
    train = dataset.part("train")
    if len(train) > REFERENCE_ROWS:
        train = train.sample(n=REFERENCE_ROWS, random_state=seed).sort_index()
    frame = train[dataset.features].reset_index(drop=True)
    predictions = model_format.predict_frame(module, spec, frame)
    if predictions.ndim == 1:
        frame[model_format.PREDICTION_COLUMN] = predictions
    return frame

