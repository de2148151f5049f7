"""The exports a model's training makes for the engines of the endpoints that serve it.

mlc's server reads mlc's model folder; the other engines read files of their own, which the
train step makes from that folder and logs to the training's MLflow run (mlc/runtime/export/,
docs/serving-engines-exports.md). Which ones follows from the engines alone:

    triton      a torch model: `onnx` and `triton` (a repository of the ONNX graph);
                an XGBoost or LightGBM model: `triton` (a FIL repository)
    torchserve  a torch model: `torchscript` and `torchserve` (the .mar)
    mlserver    none: MLServer's MLflow runtime serves the logged pyfunc model as it is
    mlc, custom none
    huggingface a `generative` model (docs/llm.md): none; its trainer logs it with MLflow's
                transformers flavour, a folder vLLM reads as it is

What cannot be exported is refused here (MLC332): a custom trainer's model (its command logs
whatever it logs), a framework the engine's export does not cover, and engines for which mlc
makes no export (tfserving). `huggingface` needs no export: it serves the MLflow
transformers model a custom trainer logs, and a bundled trainer's tabular model is refused.
The Triton repository holds one config.pbtxt,
so the Triton endpoints of one model must batch alike (MLC333).
"""

from __future__ import annotations

from mlc import step_contract as sc

from .. import ir
from .context import Context

NOT_EXPORTABLE = "MLC332"
TRITON_BATCHING_DIFFERS = "MLC333"

TREE_FRAMEWORKS = ("xgboost", "lightgbm")
# engine -> the exports of a torch model (mlc's builtin trainer's folder)
TORCH_EXPORTS = {"triton": ("onnx", "triton"), "torchserve": ("torchscript", "torchserve")}
NO_EXPORTS = ("mlc", "mlserver", "custom")


def model_exports(ctx: Context, models: dict[str, ir.Model],
                  endpoints: dict[str, ir.Endpoint]
                  ) -> dict[str, tuple[list[str], ir.Batching | None]]:
    """model -> (its exports in the contract's order, the Triton batching or None), for the
    models some endpoint needs an export of."""
    wanted: dict[str, set[str]] = {}
    triton: dict[str, list[ir.Endpoint]] = {}
    for name in sorted(endpoints):
        e = endpoints[name]
        if e.engine in NO_EXPORTS or e.model not in models:
            continue
        if e.engine == "huggingface" and models[e.model].task == "generative":
            continue  # its custom trainer logs a transformers model, which vLLM reads as it is
        names = _needs(ctx, models[e.model], e)
        if names:
            wanted.setdefault(e.model, set()).update(names)
            if "triton" in names:
                triton.setdefault(e.model, []).append(e)
    out = {}
    for model, names in sorted(wanted.items()):
        out[model] = ([n for n in sc.EXPORTS if n in names], _batching(ctx, triton.get(model)))
    return out


def _needs(ctx: Context, model: ir.Model, e: ir.Endpoint) -> tuple[str, ...]:
    path = ("serving", e.name, "engine")
    if e.engine == "huggingface":
        # a custom trainer's MLflow transformers model is what the fetch lays out for vLLM
        # (mlc/runtime/serve/fetch.py); mlc's bundled trainers make tabular models only
        if model.training.kind == "builtin":
            ctx.error(NOT_EXPORTABLE, f"endpoint `{e.name}` cannot serve model "
                      f"`{model.name}` with engine `huggingface`: vLLM serves a Hugging Face "
                      "language model, and mlc's bundled trainers make tabular models",
                      path, help="train the model with `training.custom` whose command logs "
                      "an MLflow transformers model, or choose another engine")
        return ()
    if model.training.kind != "builtin":
        ctx.error(NOT_EXPORTABLE, f"endpoint `{e.name}` serves model `{model.name}` with "
                  f"engine `{e.engine}`, which needs an export of the model; mlc exports the "
                  "models of its builtin trainer only, and `" + model.name + "` is trained by "
                  "a custom command", path,
                  help="serve it with `engine: mlc` or `engine: mlserver` (both read the "
                  "logged MLflow model), or train it with `training.builtin`")
        return ()
    if e.engine in TORCH_EXPORTS and model.framework == "torch":
        return TORCH_EXPORTS[e.engine]
    if e.engine == "triton" and model.framework in TREE_FRAMEWORKS:
        return ("triton",)
    if e.engine == "torchserve":
        what = "TorchServe gets a TorchScript export, which mlc makes of torch models only"
    elif e.engine == "triton":
        what = ("Triton gets an ONNX export of a torch model or a FIL repository of an "
                f"XGBoost or LightGBM model, and a `{model.framework}` model has neither")
    else:
        what = f"mlc makes no export that `{e.engine}` reads"
    ctx.error(NOT_EXPORTABLE, f"endpoint `{e.name}` cannot serve model `{model.name}` "
              f"(framework `{model.framework}`) with engine `{e.engine}`: {what}", path,
              help="choose an engine that reads this model (docs/serving-engines-exports.md "
              "lists what each engine gets), or `engine: mlc`")
    return ()


def _batching(ctx: Context, served: list[ir.Endpoint] | None) -> ir.Batching | None:
    """The Triton endpoints' one batching; a second, different one is refused."""
    if not served:
        return None
    first = served[0]
    for other in served[1:]:
        if other.batching != first.batching:
            ctx.error(TRITON_BATCHING_DIFFERS, f"endpoints `{first.name}` and `{other.name}` "
                      f"serve model `{first.model}` with engine `triton` but batch "
                      "differently: the model's Triton repository has one config.pbtxt, "
                      "whose dynamic batching is the endpoints' `batching`",
                      ("serving", other.name, "batching"),
                      help=f"give `{other.name}` the same `batching` as `{first.name}`")
    return first.batching


def add_exports(pipelines: dict[str, ir.Pipeline],
                exports: dict[str, tuple[list[str], ir.Batching | None]]
                ) -> dict[str, ir.Pipeline]:
    """Each training pipeline's train step, told the exports of its model."""
    out = {}
    for name, p in pipelines.items():
        if p.kind == "training" and p.model in exports:
            names, batching = exports[p.model]
            p = p.model_copy(update={"steps": [
                s.model_copy(update={"exports": names, "export_batching": batching})
                if s.kind == "train" else s for s in p.steps]})
        out[name] = p
    return out


def export_env(step: ir.Step) -> dict[str, str]:
    """A train step's exports for its model's engines (mlc/runtime/export/), when it has any:
    names from `step_contract.EXPORTS` and integers, nothing a user typed. The Argo backend
    and `mlc run` both set these."""
    env = {}
    if step.exports:
        env[sc.EXPORTS_ENV] = ",".join(step.exports)
    if step.export_batching is not None:
        b = step.export_batching
        env[sc.EXPORT_BATCHING_ENV] = (
            f"max_batch_size={b.max_batch_size},"
            f"max_queue_delay_microseconds={round(b.max_latency_seconds * 1_000_000)},"
            f"max_queue_size={b.max_queue}")
    return env
