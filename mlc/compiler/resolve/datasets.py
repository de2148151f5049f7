"""Models trained on a `dataset` (`task: generative | custom`) instead of features and a label.

Such a model is trained only by a custom trainer, which gets the data's location through the
step contract (MLC_DATASET_URI, MLC_DATASET_KIND, MLC_DATASET_FORMAT) and reads it itself; its
pipeline has no data-validation or materialisation step, and its evaluation is the metrics
the trainer declares (`training.custom.metrics`). Everything that reads feature rows of the
model (the bundled trainers, the builtin evaluation's metrics, SHAP, slices, fairness, the
search, a drift check over its features, an endpoint served by mlc's own runtime) cannot
apply, and is refused where ml.yaml sets it rather than dropped (docs/llm.md):

- MLC568: features or a label on a dataset task, or a dataset on a tabular one;
- MLC569: a model without its data (a dataset task without `dataset`, a tabular task without
  `inputs` or `label`);
- MLC574: a dataset model without `training.custom` (or with a bundled trainer);
- MLC585: a setting that reads the model's rows (explain, slices, fairness, search,
  dataWindow, maxDroppedRows);
- MLC587: `dataset.table` naming a source the trainer cannot read as files;
- MLC595: an endpoint, a drift check, a quality monitor or an A/B verdict that reads the
  model's features or scores its predictions by a tabular metric;
- MLC596: `huggingFaceTokenSecret` beside an `HF_TOKEN` of the trainer's own `env`.
"""

from __future__ import annotations

from ... import step_contract as sc
from ...schema.models import DATASET_TASKS, Model
from .. import ir
from .context import Context

WRONG_DATA = "MLC568"
NO_DATA = "MLC569"
NEEDS_CUSTOM_TRAINER = "MLC574"
READS_ROWS = "MLC585"
TABLE_NOT_FILES = "MLC587"
READS_FEATURES = "MLC595"
TOKEN_TWICE = "MLC596"

HF_TOKEN_ENV = sc.HF_TOKEN_ENV
TABULAR_TASKS = ("classification", "regression")

# evaluation and training settings that need the model's rows: (path under the model, what)
_ROW_SETTINGS = (
    (("evaluation", "explain"), "SHAP explains a model over its feature rows"),
    (("evaluation", "slices"), "slices group the test rows by a feature"),
    (("evaluation", "fairness"), "fairness metrics group the test rows by a feature"),
    (("training", "search"), "the search's trials are scored on the validation rows by "
     "the builtin evaluation"),
    (("training", "dataWindow"), "the window selects labelled rows by their event time"),
    (("training", "maxDroppedRows"), "it bounds the rows the feature join loses"),
)
_FIELDS = {"explain": "explain", "slices": "slices", "fairness": "fairness",
           "search": "search", "dataWindow": "data_window", "maxDroppedRows": "max_dropped_rows"}


def is_dataset_task(m: Model) -> bool:
    return m.task in DATASET_TASKS


def check_data(ctx: Context, m: Model, name: str) -> None:
    """The model's data is of its task's kind: a dataset, or features and a label."""
    path = ("models", name)
    if is_dataset_task(m):
        for key, value in (("inputs", m.inputs), ("label", m.label)):
            if value is not None:
                ctx.error(WRONG_DATA, f"model `{name}` is `task: {m.task}`: it trains on its "
                          f"`dataset`, and nothing reads `{key}`", (*path, key),
                          help=f"remove `{key}` (or use `task: classification` or "
                          "`regression` to train on features and a label)")
        if m.dataset is None:
            ctx.error(NO_DATA, f"model `{name}` is `task: {m.task}` but has no `dataset` to "
                      "train on", (*path, "task"),
                      help="add `dataset: {files: s3://bucket/corpus/*.jsonl}` (or `table:` "
                      "a source, or `huggingface:` a saved dataset)")
        return
    if m.dataset is not None:
        ctx.error(WRONG_DATA, f"model `{name}` is `task: {m.task}`: it trains on features "
                  "and a label, and nothing reads `dataset`", (*path, "dataset"),
                  help="remove `dataset`, or use `task: generative` (or `custom`) with a "
                  "custom trainer")
    for key, value in (("inputs", m.inputs), ("label", m.label)):
        if value is None:
            ctx.error(NO_DATA, f"model `{name}` is `task: {m.task}` but has no `{key}`",
                      (*path, "task"),
                      help="add `inputs: {features: [...]}` and `label: {source, column}`, "
                      "or use `task: generative` (or `custom`) with a `dataset`")


def resolve_dataset(ctx: Context, m: Model, name: str,
                    sources: dict[str, ir.Source]) -> ir.Dataset | None:
    d = m.dataset
    if d is None or not is_dataset_task(m):
        return None
    path = ("models", name, "dataset")
    if d.files is not None:
        return ir.Dataset(kind="files", uri=d.files, format=d.format, source=None)
    if d.huggingface is not None:
        return ir.Dataset(kind="huggingface", uri=d.huggingface, format=None, source=None)
    if not ctx.check_ref(d.table, sources, "source", (*path, "table"), "sources"):
        return None
    source = sources[d.table]
    location = source.options.get("path")
    if source.type != "file" or not location:
        ctx.error(TABLE_NOT_FILES, f"model `{name}` trains on source `{d.table}`, a "
                  f"{source.type} source: its trainer gets a location to read, and only a "
                  "file source has one", (*path, "table"),
                  help="export the table to files in object storage and use `dataset: "
                  "{files: s3://...}`, or name a `type: file` source")
        return None
    return ir.Dataset(kind="table", uri=location, format=source.options.get("format"),
                      source=d.table)


def check_training(ctx: Context, m: Model, name: str) -> None:
    """What a dataset model's training and evaluation may ask."""
    if not is_dataset_task(m):
        return
    path = ("models", name)
    t = m.training
    bundled = [b for b in ("builtin", "xgboost", "lightgbm", "sklearn")
               if getattr(t, b) is not None]
    if t.custom is None:
        where = (*path, "training", bundled[0]) if bundled else (*path, "task")
        ctx.error(NEEDS_CUSTOM_TRAINER, f"model `{name}` is `task: {m.task}`: only a custom "
                  "trainer reads a `dataset` (the bundled trainers fit feature rows)", where,
                  help="add `framework: custom` and `training: {custom: {image, command}}` "
                  "(docs/llm.md)")
    elif m.framework != "custom":
        ctx.error(NEEDS_CUSTOM_TRAINER, f"model `{name}` is `task: {m.task}` with "
                  f"`framework: {m.framework}`, whose bundled trainer fits feature rows",
                  (*path, "framework"), help="set `framework: custom`")
    for sub, why in _ROW_SETTINGS:
        section = getattr(m, "evaluation" if sub[0] == "evaluation" else "training")
        value = getattr(section, _FIELDS[sub[1]])
        if value is None or value == []:
            continue
        ctx.error(READS_ROWS, f"model `{name}` trains on a dataset, but `{'.'.join(sub)}` "
                  f"needs feature rows: {why}", (*path, *sub),
                  help=f"remove `{sub[1]}`; a dataset model is judged by the metrics its "
                  "trainer declares (`training.custom.metrics`)")



def check_token(ctx: Context, m: Model, name: str) -> None:
    """`huggingFaceTokenSecret` is HF_TOKEN: the trainer's own `env` may not set it too."""
    path = ("models", name)
    t = m.training
    if t.custom is not None and t.custom.hugging_face_token_secret is not None \
            and HF_TOKEN_ENV in t.custom.env:
        ctx.error(TOKEN_TWICE, f"model `{name}` sets `huggingFaceTokenSecret` and an "
                  f"`{HF_TOKEN_ENV}` of its own in `env`: one would hide the other",
                  (*path, "training", "custom", "env", HF_TOKEN_ENV),
                  help=f"keep `huggingFaceTokenSecret` and remove `env.{HF_TOKEN_ENV}`")


def check_consumers(ctx: Context, models: dict[str, ir.Model]) -> None:
    """Endpoints and drift checks of dataset models that would read their features."""
    p = ctx.project
    for name in sorted(p.serving):
        e = p.serving[name]
        model = models.get(e.model)
        if model is None or model.dataset is None:
            continue
        path = ("serving", name)
        if e.engine == "mlc":
            ctx.error(READS_FEATURES, f"endpoint `{name}` serves `{e.model}`, a {model.task} "
                      "model trained on a dataset, with mlc's own runtime, which scores "
                      "feature rows", (*path, "engine") if "engine" in e.model_fields_set
                      else (*path, "model"),
                      help="serve it with `engine: huggingface` (a generative model) or "
                      "`engine: custom` (your own server)")
        if e.online_features:
            ctx.error(READS_FEATURES, f"endpoint `{name}` looks up online features, but "
                      f"model `{e.model}` has none (it trains on a dataset)",
                      (*path, "onlineFeatures"), help="remove `onlineFeatures`")
        if e.mode in ("batch", "stream"):
            ctx.error(READS_FEATURES, f"endpoint `{name}` is `mode: {e.mode}`, which scores "
                      f"feature rows, but model `{e.model}` has no features",
                      (*path, "mode"), help="serve it `mode: online` or `serverless`")
        if e.rollout.verdict is not None:
            ctx.error(READS_FEATURES, f"endpoint `{name}`'s A/B verdict compares the arms' "
                      f"predictions with labels by a {'/'.join(TABULAR_TASKS)} metric, and "
                      f"model `{e.model}` ({model.task}) has none",
                      (*path, "rollout", "verdict"),
                      help="remove `verdict` and judge the arms by their SLOs")
        if e.explain is not None:
            ctx.error(READS_FEATURES, f"endpoint `{name}` explains requests by their "
                      f"features, but model `{e.model}` has none (it trains on a dataset)",
                      (*path, "explain"), help="remove `explain`")
    for monitor in sorted(p.monitoring.quality):
        endpoint = p.serving.get(p.monitoring.quality[monitor].endpoint)
        model = models.get(endpoint.model) if endpoint is not None else None
        if model is not None and model.dataset is not None:
            ctx.error(READS_FEATURES, f"quality monitor `{monitor}` scores the predictions of "
                      f"model `{endpoint.model}` against labels by a "
                      f"{'/'.join(TABULAR_TASKS)} metric, and a {model.task} model has none",
                      ("monitoring", "quality", monitor),
                      help="remove the quality monitor; watch the endpoint's SLOs instead")
    for check in sorted(p.monitoring.drift):
        d = p.monitoring.drift[check]
        endpoint = p.serving.get(d.endpoint) if d.endpoint else None
        target = endpoint.model if endpoint is not None else d.model
        model = models.get(target) if target else None
        if model is not None and model.dataset is not None:
            what = f"endpoint `{d.endpoint}`'s requests" if endpoint is not None \
                else f"model `{target}`'s training data"
            ctx.error(READS_FEATURES, f"drift check `{check}` compares the features of {what}"
                      f", but model `{target}` has none (it trains on a dataset)",
                      ("monitoring", "drift", check),
                      help="remove the drift check; watch the endpoint's SLOs instead")
