"""Models: their inputs, training job, gates and registry names."""

from __future__ import annotations

from ...schema.models import BuiltinTrainer, Model
from ...schema.types import IMAGE_RE, duration_seconds
from .. import ir
from ..names import dns_label
from . import evaluation, fairness, search
from .context import UNKNOWN_COLUMN, Context
from .env_vars import resolve_env
from .features import feature_refs
from .platform import resolve_image

NO_TRAINING = "MLC301"
GPU_REQUIRED = "MLC305"
FRAMEWORK_WITHOUT_BUILTIN = "MLC326"


def _retries(r) -> ir.Retries:
    return ir.Retries(limit=r.limit, backoff_seconds=int(duration_seconds(r.backoff.duration)),
                      backoff_factor=r.backoff.factor,
                      backoff_max_seconds=int(duration_seconds(r.backoff.max_duration)))


def has_training(model: Model) -> bool:
    """A model is trainable by mlc if it has a trainer: builtin (torch's default) or custom."""
    t = model.training
    return t.custom is not None or t.builtin is not None or model.framework == "torch"


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
                                   custom), fairness_column=sensitive)
    return models, synthesized


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
    else:
        if t.builtin is not None and m.framework != "torch":
            ctx.error(FRAMEWORK_WITHOUT_BUILTIN, f"model `{name}` is `framework: "
                      f"{m.framework}`, but the builtin trainer trains a torch network: it "
                      "would register a torch model under the other framework's name",
                      (*path, "builtin"), help="set `framework: torch` for the builtin "
                      f"trainer, or train the {m.framework} model with `training: {{custom: "
                      "{image, command}}` (docs/training-contract.md)")
        builtin = t.builtin or BuiltinTrainer.model_validate({}, strict=True)
        if builtin.mixed_precision == "fp16" and profile is not None and not profile.gpu_count:
            ctx.error(GPU_REQUIRED, f"`mixedPrecision: fp16` needs a GPU, but hardware profile "
                      f"`{t.hardware}` has none", (*path, "builtin", "mixedPrecision"),
                      help="use `auto` (fp16/bf16 only where the hardware supports it) or a "
                      "GPU profile")
        kind, image = "builtin", images["train"]
        hyper = builtin.model_dump(exclude={"env"})
        command, args = [], []
        env, secret_env = resolve_env(ctx, builtin.env, secrets, (*path, "builtin", "env"))
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
        search=search.resolve_search(ctx, m, name, metrics))
