"""Hyperparameter search with Optuna: the `search-start` and `search` steps.

    search-start   the training data fixed once (dataset.parquet), the training run opened
    search         trials: values drawn from ml.yaml's space, the builtin fit on the training
                   rows, judged by the metric on its validation rows; each an MLflow child run
    train          (trainer.py) the best trial's values train the model that is evaluated,
                   gated and registered like any run

In a cluster every trial is its own pod (MLC_SEARCH_TRIAL = its number) and `parallelism`
of them run at once; with `platform.katib` a Katib trial's pod (MLC_KATIB_TRIAL = its name)
runs the values Katib drew (MLC_SEARCH_VALUE_<NAME>) and prints its metric per epoch for
Katib's collector; under `mlc run` the step runs the trials in turn, in this process. Either
way a trial rebuilds the study from the trials recorded before it in MLflow (search_runs.py),
so that TPE learns from them and the pruner compares against them, then asks Optuna for its
values. Samplers are seeded by `seed` plus the trial's number: the same search draws the
same values. Grid trial `n` is the n-th combination, so parallel pods never repeat one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from typing import Any

from mlc import step_contract as sc
from mlc.compiler import ir
from mlc.runtime.step import StepContext, StepFailed
from mlc.runtime.train import search_runs as sr

# The pruner waits for this many finished trials and compares from the second epoch on.
PRUNER_STARTUP_TRIALS = 2
PRUNER_WARMUP_EPOCHS = 1


def _search(ctx: StepContext) -> ir.Search:
    search = ctx.model.training.search
    if search is None:
        raise StepFailed(f"model `{ctx.model.name}` has no `training.search`")
    return search


def start(ctx: StepContext) -> None:
    """Fix the data every trial and the final run train on, and open the training run."""
    from mlc.runtime.train import data, tracking

    model = ctx.model
    search = _search(ctx)
    dataset = data.build_dataset(ctx, model)
    run = tracking.TrackedRun.open(ctx, model, dataset, trainer="builtin")
    from mlflow.entities import Param

    params = {"search_method": search.method, "search_trials": str(search.trials),
              "search_metric": search.metric, "search_parallelism": str(search.parallelism),
              "search_pruning": str(search.pruning).lower(), "search_seed": str(search.seed)}
    existing = run.client.get_run(run.run_id).data.params
    fresh = [Param(k, v) for k, v in sorted(params.items()) if k not in existing]
    if fresh:
        run.client.log_batch(run.run_id, params=fresh, synchronous=True)
    print(f"search of {model.name}: {search.trials} {search.method} trials on "
          f"{dataset.info['train_rows']} training rows; MLflow run {run.run_id}")


def distributions(search: ir.Search) -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for r in search.space:
        if r.type == "choice":
            out[r.name] = CategoricalDistribution([json.dumps(v) for v in r.values or []])
        elif r.type == "int":
            out[r.name] = IntDistribution(int(r.low), int(r.high), step=r.step or 1)
        else:
            out[r.name] = FloatDistribution(float(r.low), float(r.high),
                                            log=r.type == "loguniform")
    return out


def grid_point(search: ir.Search, number: int) -> dict[str, Any]:
    """The `number`-th combination of a grid search, as the sampler would draw it."""
    axes = []
    for r in search.space:
        if r.type == "int":
            axes.append(list(range(int(r.low), int(r.high) + 1, r.step or 1)))
        else:
            axes.append([json.dumps(v) for v in r.values or []])
    combo = next(itertools.islice(itertools.product(*axes), number, None))
    return dict(zip((r.name for r in search.space), combo, strict=True))


def study_for(search: ir.Search, number: int, before: list[sr.Trial]):
    """An in-memory study holding the finished trials, seeded for trial `number`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = search.seed + number
    sampler = optuna.samplers.TPESampler(seed=seed) if search.method == "tpe" \
        else optuna.samplers.RandomSampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                         n_warmup_steps=PRUNER_WARMUP_EPOCHS) \
        if search.pruning else optuna.pruners.NopPruner()
    study = optuna.create_study(
        direction="maximize" if search.higher_is_better else "minimize", sampler=sampler,
        pruner=pruner)
    dists = distributions(search)
    states = {sr.COMPLETE: optuna.trial.TrialState.COMPLETE,
              sr.PRUNED: optuna.trial.TrialState.PRUNED}
    for t in before:
        if t.state not in states or set(t.drawn) != set(dists):
            continue
        study.add_trial(optuna.trial.create_trial(
            state=states[t.state], params=t.drawn, distributions=dists,
            value=t.value if t.state == sr.COMPLETE else None,
            intermediate_values=t.intermediate))
    if search.method == "grid":
        study.enqueue_trial(grid_point(search, number))
    return study


def katib_number(trial: str) -> int:
    """A Katib trial's number among the MLflow records: Katib names its trials, it does not
    number them, so the name fixes one (the same on every attempt of the trial)."""
    return int(hashlib.sha256(trial.encode("utf-8")).hexdigest()[:8], 16)


def katib_values(search: ir.Search) -> dict[str, Any]:
    """The values Katib drew for this trial (MLC_SEARCH_VALUE_<NAME>), as Optuna would have
    drawn them: numbers, and each choice as its JSON text."""
    out: dict[str, Any] = {}
    for r in search.space:
        name = sc.search_value_env(r.name)
        raw = os.environ.get(name)
        if raw is None:
            raise StepFailed(f"{name} is not set: Katib passes every searched value")
        try:
            if r.type == "choice":
                (value,) = [v for v in r.values or [] if sc.search_value_text(v) == raw]
                out[r.name] = json.dumps(value)
            elif r.type == "int":
                number = float(raw)
                if not number.is_integer():
                    raise ValueError(raw)
                out[r.name] = int(number)
            else:
                out[r.name] = float(raw)
        except ValueError as exc:
            raise StepFailed(f"{name}=`{raw}` is no value of the `{r.name}` range") from exc
    return out


def katib_metric_line(metric: str, value: float) -> str:
    """What Katib's StdOut collector reads: the time first, so that it orders the values."""
    ns = time.time_ns()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"
    return f"{stamp} {sc.KATIB_METRIC_MARKER} {metric}={value!r}"


def run_trial(ctx: StepContext, run, dataset, base: dict[str, Any], search: ir.Search,
              number: int, katib: str | None = None) -> sr.Trial | None:
    """One trial, recorded as a child run; None when an earlier attempt finished it. Under
    Katib (`katib`: the trial's name) Katib drew the values and stops the trial early; the
    trial prints its metric after each epoch for Katib's collector."""
    import optuna
    from mlflow.entities import Metric, Param, RunTag

    from mlc.runtime.train import evaluation, trainer

    client, model = run.client, ctx.model
    found = sr.trials(client, run.experiment_id, run.run_id)
    mine = [t for t in found if t.number == number]
    finished = [t for t in mine if t.state in (sr.COMPLETE, sr.PRUNED)]
    if finished:
        print(f"trial {number} finished in an earlier attempt")
        if katib is not None:  # Katib's collector reads this attempt's log only
            for _, value in sorted(finished[0].intermediate.items()):
                print(katib_metric_line(search.metric, value), flush=True)
        return None
    for t in mine:  # an attempt that died: closed, so that it counts as failed
        if t.status == "RUNNING":
            client.set_tag(t.run_id, sr.TAG_STATE, sr.FAILED)
            client.set_terminated(t.run_id, status="FAILED")
    if katib is None:
        study = study_for(search, number, [t for t in found if t.number != number])
        trial = study.ask(distributions(search))
        drawn = dict(sorted(trial.params.items()))
    else:
        trial, drawn = None, dict(sorted(katib_values(search).items()))
    hp = {**base, **sr.decode(search, drawn)}
    tags = {sr.TAG_PARENT: run.run_id, sr.TAG_TRIAL: str(number), sr.TAG_STATE: "running",
            sr.TAG_DRAWN: json.dumps(drawn, sort_keys=True),
            "mlflow.runName": f"{model.name}-{ctx.run_id}-trial-{katib or number}",
            "mlc.model": model.name, "mlc.pipeline_run": ctx.run_id}
    if katib is not None:
        tags[sr.TAG_KATIB_TRIAL] = katib
    child = client.create_run(run.experiment_id, tags=tags).info.run_id
    client.log_batch(child, params=[Param(k, _text(v)) for k, v in sorted(hp.items())],
                     synchronous=True)
    spec, arrays = trainer.prepare(dataset, model.task, hp)
    metric_of = evaluation.metric_function(model.task, spec)
    curve: dict[int, float] = {}

    def validate(truth, predictions) -> dict[str, float]:
        metrics = metric_of(truth, predictions)
        value = float(metrics.get(search.metric, math.nan))
        epoch = len(curve) + 1
        curve[epoch] = value
        if math.isfinite(value) and trial is None:
            print(katib_metric_line(search.metric, value), flush=True)
        elif math.isfinite(value):
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return metrics

    state, value, status = sr.COMPLETE, None, "FINISHED"
    try:
        trainer.fit(spec, arrays, hp, validate=validate)
        value = curve.get(len(curve))
        if value is None or not math.isfinite(value):
            state, status = sr.FAILED, "FAILED"
    except optuna.TrialPruned:
        state = sr.PRUNED
    stamp = int(time.time() * 1000)
    metrics = [Metric(f"val_{search.metric}", v, stamp, epoch)
               for epoch, v in sorted(curve.items()) if math.isfinite(v)]
    tags = [RunTag(sr.TAG_STATE, state),
            RunTag(sr.TAG_INTERMEDIATE, json.dumps({str(k): v for k, v in sorted(curve.items())
                                                    if math.isfinite(v)}))]
    if value is not None and state == sr.COMPLETE:
        tags.append(RunTag(sr.TAG_VALUE, repr(value)))
    client.log_batch(child, metrics=metrics, tags=tags, synchronous=True)
    client.set_terminated(child, status=status)
    shown = "no value" if value is None else f"{search.metric} {value:.4f}"
    print(f"trial {number}: {state}, {shown}, "
          + ", ".join(f"{k}={_text(v)}" for k, v in sr.decode(search, drawn).items()))
    return sr.Trial(number=number, state=state, value=value, drawn=drawn,
                    intermediate=curve, run_id=child, status=status)


def run(ctx: StepContext) -> None:
    """The trials: this pod's one (MLC_SEARCH_TRIAL), or all of them in turn."""
    from mlc.runtime.train import data, tracking, trainer

    model = ctx.model
    search = _search(ctx)
    record = ctx.run_dir / tracking.RUN_FILE
    if not record.is_file():
        raise StepFailed(f"no {tracking.RUN_FILE} in {ctx.run_dir}: run search-start first")
    dataset = data.load_dataset(ctx)
    run_ = tracking.TrackedRun.open(ctx, model, dataset, trainer="builtin")
    base = trainer.hyperparameters(model.training.hyperparameters, ctx.param("hyperparameters"))
    katib = os.environ.get(sc.KATIB_TRIAL_ENV, "")
    if katib:  # one Katib trial: Katib drew its values and keeps the count
        run_trial(ctx, run_, dataset, base, search, katib_number(katib), katib=katib)
        return
    raw = os.environ.get(sc.SEARCH_TRIAL_ENV, "")
    if raw:
        try:
            numbers = [int(raw)]
        except ValueError as exc:
            raise StepFailed(f"{sc.SEARCH_TRIAL_ENV} must be a trial number, got "
                             f"`{raw}`") from exc
        if not 0 <= numbers[0] < search.trials:
            raise StepFailed(f"trial {numbers[0]} is outside 0..{search.trials - 1}")
    else:
        numbers = list(range(search.trials))
    for number in numbers:
        run_trial(ctx, run_, dataset, base, search, number)
    if not raw:
        found = sr.trials(run_.client, run_.experiment_id, run_.run_id)
        top = sr.best(search, found)
        if top is None:
            raise StepFailed(f"none of the {search.trials} trials completed: nothing to train")
        print(f"best: trial {top.number}, {search.metric} {top.value:.4f}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
