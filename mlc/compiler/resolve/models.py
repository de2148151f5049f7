"""Models: their inputs, training job, gates and registry names."""

from __future__ import annotations

from ...schema.models import BuiltinTrainer, Model
from ...schema.types import IMAGE_RE, duration_seconds
from ...trainer_catalog import BLOCKS, SKLEARN_SETTINGS, SKLEARN_TASKS, TRAINERS
from .. import ir
from ..names import dns_label
from . import datasets, evaluation, fairness, ranking, search
from .context import UNKNOWN_COLUMN, Context
from .env_vars import resolve_env
from .features import feature_refs
from .platform import resolve_image, secret_ref

NO_TRAINING = "MLC301"
GPU_REQUIRED = "MLC305"
# MLC326 (the builtin trainer with another framework) is retired: MLC328 says it for every
# bundled trainer's block
TRAINER_FOR_OTHER_FRAMEWORK = "MLC328"
SKLEARN_SETTING_UNUSED = "MLC331"
EARLY_STOPPING_WITHOUT_VALIDATION = "MLC547"
CHECKPOINT_NOT_TAKEN = "MLC329"


def _retries(r) -> ir.Retries:
    return ir.Retries(limit=r.limit, backoff_seconds=int(duration_seconds(r.backoff.duration)),
                      backoff_factor=r.backoff.factor,
                      backoff_max_seconds=int(duration_seconds(r.backoff.max_duration)))


def trainer_block(model: Model):
    """The `training` block of the bundled trainer of the model's framework, set or not."""
    trainer = TRAINERS.get(model.framework)
    return getattr(model.training, trainer.block) if trainer is not None else None


def has_training(model: Model) -> bool:
    """A model is trainable by mlc if it has a trainer: custom, or the bundled trainer of its
    framework (torch's by default, the others' where their block is set). A block for
    another framework counts too: it is refused (MLC328), not ignored."""
    t = model.training
    trainer = TRAINERS.get(model.framework)
    return t.custom is not None or (trainer is not None and trainer.default_on) or any(
        getattr(t, block) is not None for block in BLOCKS)


def resolve_models(ctx: Context, views: dict[str, ir.FeatureView],
                   services: dict[str, ir.FeatureService], sources: dict[str, ir.Source],
                   hardware: dict[str, ir.Hardware], images: dict[str, ir.Image],
                   secrets: dict[str, ir.SecretRef]
                   ) -> tuple[dict[str, ir.Model], dict[str, ir.FeatureService]]:
    """The resolved models, and the feature services synthesised for `inputs.features` lists."""
    models: dict[str, ir.Model] = {}
    synthesized: dict[str, ir.FeatureService] = {}
    for name in sorted(ctx.project.models):
        m = ctx.project.models[name]
        path = ("models", name)
        datasets.check_data(ctx, m, name)
        datasets.check_training(ctx, m, name)
        datasets.check_token(ctx, m, name)
        if datasets.is_dataset_task(m) or m.inputs is None or m.label is None:
            # a tabular model without its data (MLC569) still resolves, without rows, so
            # that what refers to it is not refused as well
            models[name] = _dataset_model(ctx, m, name, sources, hardware, images, secrets)
            continue
        # inputs: a named feature service, or a list that becomes a service named after the model
        if m.inputs.feature_service is not None:
            service_name = m.inputs.feature_service
            ok = ctx.check_ref(service_name, services, "feature service",
                               (*path, "inputs", "featureService"), "featureServices")
            features = services[service_name].features if ok else []
        else:
            service_name = name
            if service_name in services:
                ctx.error("MLC203", f"model `{name}` lists its features, which makes a feature "
                          f"service named `{name}`, but one is already declared",
                          (*path, "inputs", "features"),
                          help=f"use `inputs: {{featureService: {name}}}` instead")
            features = feature_refs(ctx, m.inputs.features or [], views,
                                    (*path, "inputs", "features"))
            synthesized[service_name] = ir.FeatureService(
                name=service_name, features=features, description=f"Inputs of model {name}",
                tags={}, synthesized=True)
        keys: list[str] = []
        for ref in features:
            for key in views[ref.view].join_keys:
                if key not in keys:
                    keys.append(key)
        # label: a column of a source that also holds the entity keys and the event time
        ctx.check_ref(m.label.source, sources, "source", (*path, "label", "source"), "sources")
        label_source = sources.get(m.label.source)
        if label_source and label_source.columns:
            columns = {c.name for c in label_source.columns}
            for col in [m.label.column, *keys]:
                if col not in columns:
                    ctx.error(UNKNOWN_COLUMN, f"source `{m.label.source}` has no column `{col}` "
                              "(the label source must hold the label and the entity keys)",
                              (*path, "label"), help=f"add `{col}` to its columns")
        training = _resolve_training(ctx, m, name, hardware, images, secrets)
        ranks = ranking.resolve_ranking(ctx, m, name, keys, label_source)
        custom = training.metrics
        columns = [*keys, *(ref.field for ref in features)]
        sensitive, fair = fairness.fairness_metrics(ctx, m, name, columns)
        models[name] = ir.Model(
            name=name, k8s_name=dns_label(name), task=m.task, framework=m.framework,
            description=m.description, feature_service=service_name, features=features,
            entity_keys=keys, label_source=m.label.source, label_column=m.label.column,
            training=training, test_split=m.evaluation.test_split,
            gates=evaluation.gates(ctx, m, name, custom, fair),
            compare_with_production=evaluation.comparison(ctx, m, name, custom),
            registered_name=m.registry.name or name,
            candidate_alias=m.registry.candidate_alias,
            production_alias=m.registry.production_alias, auto_promote=m.registry.auto_promote,
            pipeline=dns_label("train", name) if has_training(m) else None,
            origin=ctx.origin(path), explain=_explain(m),
            slices=fairness.slices(ctx, m, name, keys, [ref.field for ref in features],
                                   custom), fairness_column=sensitive, ranking=ranks)
    return models, synthesized


def _dataset_model(ctx: Context, m: Model, name: str, sources: dict[str, ir.Source],
                   hardware: dict[str, ir.Hardware], images: dict[str, ir.Image],
                   secrets: dict[str, ir.SecretRef]) -> ir.Model:
    """A model trained on a dataset: no features, keys or label; judged by its trainer's
    declared metrics (resolve/datasets.py refused what reads rows)."""
    training = _resolve_training(ctx, m, name, hardware, images, secrets)
    custom = training.metrics
    return ir.Model(
        name=name, k8s_name=dns_label(name), task=m.task, framework=m.framework,
        description=m.description, feature_service="", features=[], entity_keys=[],
        label_source="", label_column="", training=training,
        test_split=m.evaluation.test_split,
        gates=evaluation.gates(ctx, m, name, custom, {}),
        compare_with_production=evaluation.comparison(ctx, m, name, custom),
        registered_name=m.registry.name or name, candidate_alias=m.registry.candidate_alias,
        production_alias=m.registry.production_alias, auto_promote=m.registry.auto_promote,
        pipeline=dns_label("train", name) if has_training(m) else None,
        origin=ctx.origin(("models", name)), explain=None, slices=[], fairness_column=None,
        dataset=datasets.resolve_dataset(ctx, m, name, sources))


def _explain(m: Model) -> ir.Explain | None:
    e = m.evaluation.explain
    return ir.Explain(samples=e.samples, background=e.background, seed=e.seed) if e else None


def _resolve_training(ctx: Context, m: Model, name: str, hardware: dict[str, ir.Hardware],
                      images: dict[str, ir.Image],
                      secrets: dict[str, ir.SecretRef]) -> ir.Training:
    t = m.training
    path = ("models", name, "training")
    ctx.check_ref(t.hardware, hardware, "hardware profile", (*path, "hardware"), "hardware")
    profile = hardware.get(t.hardware)
    if not has_training(m) and t.schedule:
        ctx.error(NO_TRAINING, f"model `{name}` has a training schedule but no trainer "
                  f"(framework `{m.framework}` has no builtin trainer)", (*path, "schedule"),
                  help="add `training: {custom: {image, command}}` or remove the schedule")
    if t.custom is not None:
        c = t.custom
        if IMAGE_RE.fullmatch(c.image) and ("/" in c.image or ":" in c.image or "@" in c.image):
            image = resolve_image(ctx, c.image, (*path, "custom", "image"))
        elif ctx.check_ref(c.image, ctx.project.images.custom, "image",
                           (*path, "custom", "image"), "images.custom"):
            image = images[f"custom/{c.image}"]
        else:
            image = images["train"]
        kind, hyper = "custom", {}
        command, args = list(c.command), list(c.args)
        env, secret_env = resolve_env(ctx, c.env, secrets, (*path, "custom", "env"))
        token = secret_ref(ctx, secrets, c.hugging_face_token_secret,
                           (*path, "custom", "huggingFaceTokenSecret"))
        if token is not None:  # MLC596 refused an HF_TOKEN of env beside it
            secret_env = dict(sorted({**secret_env, datasets.HF_TOKEN_ENV: token}.items()))
            env.pop(datasets.HF_TOKEN_ENV, None)
    else:
        _other_framework_blocks(ctx, m, name, path)
        trainer = TRAINERS.get(m.framework)
        kind, image, command, args = "builtin", images["train"], [], []
        if trainer is not None and trainer.framework != "torch" \
                and getattr(t, trainer.block) is not None:
            block = getattr(t, trainer.block)
            hyper = block.model_dump(exclude={"env"})
            _check_native(ctx, m, name, trainer.block, block, (*path, trainer.block))
            if t.checkpoint is not None:
                ctx.error(CHECKPOINT_NOT_TAKEN, f"model `{name}` sets `checkpoint`, but the "
                          f"bundled {m.framework} trainer writes no checkpoints (a retried "
                          "step fits again from the start)", (*path, "checkpoint"),
                          help="remove `checkpoint`; only the torch trainer (and a custom "
                          "one) resumes from checkpoints")
            env, secret_env = resolve_env(ctx, block.env, secrets, (*path, trainer.block, "env"))
        else:
            builtin = t.builtin or BuiltinTrainer.model_validate({}, strict=True)
            if builtin.mixed_precision == "fp16" and profile is not None \
                    and not profile.gpu_count:
                ctx.error(GPU_REQUIRED, f"`mixedPrecision: fp16` needs a GPU, but hardware "
                          f"profile `{t.hardware}` has none",
                          (*path, "builtin", "mixedPrecision"),
                          help="use `auto` (fp16/bf16 only where the hardware supports it) "
                          "or a GPU profile")
            hyper = builtin.model_dump(exclude={"env"})
            env, secret_env = resolve_env(ctx, builtin.env, secrets,
                                          (*path, "builtin", "env"))
    checkpoint = t.checkpoint
    metrics = evaluation.custom_metrics(ctx, m, name)
    return ir.Training(
        kind=kind, hyperparameters=hyper, image=image, command=command, args=args, env=env,
        hardware=t.hardware, nodes=t.nodes, schedule=t.schedule, timezone=t.timezone,
        data_window_seconds=int(duration_seconds(t.data_window)) if t.data_window else None,
        checkpoint_path=checkpoint.path if checkpoint else None,
        checkpoint_every_steps=checkpoint.every_steps if checkpoint else 500,
        retries=_retries(t.retries), timeout_seconds=int(duration_seconds(t.timeout)),
        expected_duration_seconds=int(duration_seconds(t.expected_duration)),
        checkpoint_volume=checkpoint.volume if checkpoint else None, secrets=secret_env,
        max_dropped_rows=t.max_dropped_rows, metrics=metrics,
        search=None if datasets.is_dataset_task(m)  # MLC585 refused it
        else search.resolve_search(ctx, m, name, metrics))


def _other_framework_blocks(ctx: Context, m: Model, name: str, path) -> None:
    """A bundled trainer's block on a model of another framework would train and register
    one framework's model under another's name: refused."""
    for block, framework in sorted(BLOCKS.items()):
        if getattr(m.training, block) is None or framework == m.framework:
            continue
        trainer = TRAINERS.get(m.framework)
        own = f"`training.{trainer.block}`" if trainer is not None else "`training.custom`"
        ctx.error(TRAINER_FOR_OTHER_FRAMEWORK, f"model `{name}` is `framework: "
                  f"{m.framework}`, but `training.{block}` configures the {framework} "
                  f"trainer: it would register the {framework} trainer's model as framework "
                  f"{m.framework}", (*path, block),
                  help=f"set `framework: {framework}` for this trainer, or configure {own} "
                  "instead (docs/trainers.md)")


def _check_native(ctx: Context, m: Model, name: str, block_name: str, block, path) -> None:
    """What a tree or scikit-learn trainer's block asks that its library would not do."""
    if block_name in ("xgboost", "lightgbm"):
        if block.early_stopping_rounds is not None and block.validation_split == 0 \
                and "early_stopping_rounds" in block.model_fields_set:
            ctx.error(EARLY_STOPPING_WITHOUT_VALIDATION, f"model `{name}` stops early on its "
                      "validation rows, but `validationSplit: 0` holds none out",
                      (*path, "earlyStoppingRounds"),
                      help="set `validationSplit` above 0 (e.g. 0.2), or remove "
                      "`earlyStoppingRounds` to train every round")
        elif block.validation_split >= 1:
            ctx.error(EARLY_STOPPING_WITHOUT_VALIDATION, f"model `{name}` holds every "
                      "training row out for validation (`validationSplit: 1`): none is left "
                      "to fit", (*path, "validationSplit"),
                      help="use a share below 1, e.g. 0.2")
        return
    estimator = block.estimator
    if m.task not in SKLEARN_TASKS[estimator]:
        fits = sorted(e for e, tasks in SKLEARN_TASKS.items() if m.task in tasks)
        ctx.error(SKLEARN_SETTING_UNUSED, f"scikit-learn estimator `{estimator}` of model "
                  f"`{name}` does not do {m.task} (it does "
                  f"{' and '.join(SKLEARN_TASKS[estimator])})", (*path, "estimator"),
                  help=f"use one of: {', '.join(fits)}")
    for alias, takes in SKLEARN_SETTINGS.items():
        field = next(f for f, info in type(block).model_fields.items()
                     if (info.alias or f) == alias)
        if getattr(block, field) is not None and estimator not in takes:
            ctx.error(SKLEARN_SETTING_UNUSED, f"`{alias}` does nothing for scikit-learn "
                      f"estimator `{estimator}` of model `{name}`: only "
                      f"{', '.join(f'`{e}`' for e in takes)} take it", (*path, alias),
                      help=f"remove `{alias}`, or choose an estimator that takes it")
