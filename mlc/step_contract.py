"""The step contract: every variable and file a pipeline step gets, defined once.

The Argo backend sets the pod's variables from these names, the step runtime reads them and
hands the custom trainer's command its own, and docs/training-contract.md's tables are
generated from `VARIABLES` and `FILES` (`python -m mlc.step_contract docs/training-contract.md`
rewrites them; a test fails when the doc is stale). Plain data, no imports: the compiler, the
runtimes and `mlc run` all read it.

Every step, in a cluster or on one machine, runs `python -m mlc.runtime step`; a custom
trainer's command is run by that step runtime, so it sees the same variables wherever it runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# --- where things are in a pod ------------------------------------------------------------
PROJECT_JSON = "/etc/mlc/project.json"
FEAST_REPO = "/etc/mlc/feast"
RUN_DIR = "/var/lib/mlc/run"
CHECKPOINT_MOUNT = "/var/lib/mlc/checkpoints"
HOME = "/tmp"  # the root filesystem is read-only: caches under $HOME land on a volume

# --- files in the run folder ($MLC_RUN_DIR), shared by the steps of one run ---------------
DATASET_FILE = "data/dataset.parquet"
DATA_INFO_FILE = "data/data.json"
VALIDATION_FILE = "validation.json"
VALIDATION_DIR = "validation"  # Great Expectations' result and page per source
MODEL_DIR = "model"
CUSTOM_METRICS_FILE = "custom-metrics.json"
MLFLOW_RUN_FILE = "mlflow-run.json"
TRAIN_FILE = "train.json"
EVALUATION_FILE = "evaluation.json"
EXPLAIN_FILE = "explain.json"
EXPLAIN_REPORT = "explain.html"
REGISTER_FILE = "register.json"
PROMOTE_FILE = "promote.json"
SUMMARY_DIR = "summary"  # summary/<step>.json: what `mlc run` shows when the step ends
# an A/B verdict's decision in one word (winner, no-difference, waiting, failed): the Argo
# step's output parameter, and what `mlc run` shows for a step that exited 0
VERDICT_DECISION_FILE = "verdict-decision"

# --- metrics the builtin evaluation computes on the test rows ----------------------------
# name -> True when higher is better; mlc/runtime/train/evaluation.py computes exactly these
# (a test holds the two together), and validate checks gates against them.
CLASSIFICATION_METRICS: dict[str, bool] = {
    "accuracy": True, "brier": False, "f1": True, "log_loss": False, "pr_auc": True,
    "precision": True, "recall": True, "roc_auc": True}
# multi-class labels get only these (one-vs-rest macro roc_auc, macro f1)
MULTICLASS_METRICS = ("accuracy", "f1", "log_loss", "roc_auc")
REGRESSION_METRICS: dict[str, bool] = {"mae": False, "mse": False, "r2": True, "rmse": False}
# a ranking model's, at each cutoff k of `ranking.k` (`ndcg_at_10`: MLflow's metric names take
# no `@`), over the test queries; higher is better for both
RANKING_METRICS = ("map", "ndcg")
DEFAULT_RANKING_CUTOFFS = (5, 10)


def ranking_metric(name: str, k: int) -> str:
    return f"{name}_at_{k}"


def ranking_metrics(cutoffs) -> dict[str, bool]:
    return {ranking_metric(name, k): True for name in RANKING_METRICS for k in sorted(cutoffs)}


# with `evaluation.fairness` (binary classification), computed by fairlearn over the groups
FAIRNESS_METRICS: dict[str, bool] = {
    "demographic_parity_difference": False, "demographic_parity_ratio": True,
    "equalized_odds_difference": False, "equalized_odds_ratio": True}


def builtin_metrics(task: str, cutoffs=DEFAULT_RANKING_CUTOFFS) -> dict[str, bool]:
    if task == "ranking":
        return ranking_metrics(cutoffs)
    return dict(REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS)


SetBy = Literal["pod", "runtime", "mlc run"]


@dataclass(frozen=True)
class Variable:
    name: str
    set_by: SetBy  # pod: the manifest's env (mlc run passes the same settings in-process);
    #                runtime: the step runtime, for the custom command
    steps: str  # which steps get it
    meaning: str


@dataclass(frozen=True)
class File:
    path: str  # absolute in the pod, or relative to $MLC_RUN_DIR
    steps: str  # which steps write (w) or read (r) it
    meaning: str


ALL = "every step"
TRAIN = "train"
CUSTOM = "train (custom command)"
DISTRIBUTED = "train (nodes > 1)"

# names the code uses; the table below says what each one means
PROJECT_JSON_ENV = "MLC_PROJECT_JSON"
PIPELINE_ENV = "MLC_PIPELINE"
STEP_ENV = "MLC_STEP"
MODEL_ENV = "MLC_MODEL"
RUN_ID_ENV = "MLC_RUN_ID"
RUN_DIR_ENV = "MLC_RUN_DIR"
DATA_ROOT_ENV = "MLC_DATA_ROOT"
FEAST_REPO_ENV = "MLC_FEAST_REPO"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
CHECKPOINT_DIR_ENV = "MLC_CHECKPOINT_DIR"
CHECKPOINT_URI_ENV = "MLC_CHECKPOINT_URI"
PARAM_PREFIX = "MLC_PARAM_"
PARAM_B64_SUFFIX = "_B64"
TRAIN_DATA_ENV = "MLC_TRAIN_DATA"
DATASET_URI_ENV = "MLC_DATASET_URI"
DATASET_KIND_ENV = "MLC_DATASET_KIND"
DATASET_FORMAT_ENV = "MLC_DATASET_FORMAT"
HF_TOKEN_ENV = "HF_TOKEN"
CUSTOM_DATASET = "train (custom command, a `dataset` model)"
FEATURES_ENV = "MLC_FEATURES"
LABEL_ENV = "MLC_LABEL"
TASK_ENV = "MLC_TASK"
HYPERPARAMETERS_ENV = "MLC_HYPERPARAMETERS"
MODEL_DIR_ENV = "MLC_MODEL_DIR"
METRICS_FILE_ENV = "MLC_METRICS_FILE"
RUN_ID_MLFLOW_ENV = "MLFLOW_RUN_ID"
EXPERIMENT_ID_ENV = "MLFLOW_EXPERIMENT_ID"
SEARCH_TRIAL_ENV = "MLC_SEARCH_TRIAL"
KATIB_TRIAL_ENV = "MLC_KATIB_TRIAL"
SEARCH_VALUE_PREFIX = "MLC_SEARCH_VALUE_"
# The line a Katib trial prints per epoch for Katib's StdOut collector: an RFC 3339 time,
# the marker, `<metric>=<value>`. KATIB_METRICS_FORMAT is the collector's filter for it.
KATIB_METRIC_MARKER = "mlc-katib-metric"
KATIB_METRICS_FORMAT = KATIB_METRIC_MARKER + r" ([\w-]+)=([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
LINEAGE_API_KEY_ENV = "MLC_LINEAGE_API_KEY"
# The exports a training step makes for the engines that serve its model (mlc/runtime/export/,
# docs/serving-engines-exports.md), in this order, logged to its MLflow run under `exports/`.
EXPORTS_ENV = "MLC_EXPORTS"
EXPORT_BATCHING_ENV = "MLC_EXPORT_TRITON_BATCHING"
EXPORTS = ("onnx", "torchscript", "triton", "torchserve")
EXPORTS_ARTIFACT_DIR = "exports"
EXPORTS_TAG = "mlc.exports"  # on the run: the exports it holds, comma-separated

VARIABLES: tuple[Variable, ...] = (
    Variable("HOME", "pod", ALL, f"`{HOME}` (the root filesystem is read-only)"),
    Variable(PROJECT_JSON_ENV, "pod", ALL,
             f"`{PROJECT_JSON}`: the resolved project (the IR), read-only"),
    Variable(PIPELINE_ENV, "pod", ALL, "the pipeline's name, e.g. `train-fraud-classifier`"),
    Variable(STEP_ENV, "pod", ALL, "the step's name, e.g. `train`"),
    Variable(MODEL_ENV, "pod", "steps of a pipeline with a model",
             "the model the pipeline trains, checks or serves"),
    Variable(RUN_ID_ENV, "pod", ALL,
             "names this run (the Argo workflow's name); the same in every step of the run"),
    Variable(RUN_DIR_ENV, "pod", ALL,
             f"`{RUN_DIR}`: a folder shared by all steps of one run (the files below)"),
    Variable(TRACKING_URI_ENV, "pod", ALL, "where runs and models are logged"),
    Variable(FEAST_REPO_ENV, "pod", ALL,
             f"`{FEAST_REPO}`: the generated Feast repository, read-only"),
    Variable(DATA_ROOT_ENV, "pod", ALL,
             "where relative paths of ml.yaml resolve; in a cluster, the run folder"),
    Variable(CHECKPOINT_DIR_ENV, "pod", TRAIN,
             "the checkpoint folder, when the checkpoints live on a volume"),
    Variable(CHECKPOINT_URI_ENV, "pod", TRAIN,
             "the checkpoint prefix (`s3://...`), when they live in an object store"),
    Variable(f"{PARAM_PREFIX}<NAME>{PARAM_B64_SUFFIX}", "pod", "steps that read the parameter",
             "each pipeline parameter the step reads, by upper-cased name, base64-encoded "
             "(a submitted value reaches the process unchanged: the kubelet's `$(VAR)` "
             "expansion and Argo's manifest text see only base64); the step runtime decodes it"),
    Variable(f"{PARAM_PREFIX}<NAME>", "runtime", CUSTOM,
             "the same parameter, decoded"),
    Variable(SEARCH_TRIAL_ENV, "pod", "search",
             "the trial this pod runs, 0 .. trials-1 (one Argo task per trial); unset under "
             "`mlc run`, where the step runs every trial in turn"),
    Variable(KATIB_TRIAL_ENV, "pod", "search (Katib)",
             "the Katib trial this pod runs (its name), with `platform.katib`; then "
             "Katib, not the step, draws the trial's values"),
    Variable(f"{SEARCH_VALUE_PREFIX}<NAME>", "pod", "search (Katib)",
             "each searched hyperparameter's value that Katib drew, by upper-cased name: a "
             "number, or a choice as `search_value_text` writes it"),
    Variable("MLFLOW_TRACKING_TOKEN", "pod", "train, evaluate, register, promote",
             "secret (by reference): the tracking server's token, when ml.yaml names one"),
    Variable(LINEAGE_API_KEY_ENV, "pod", "every step, with `platform.lineage.apiKeySecret`",
             "secret (by reference): the lineage server's token"),
    Variable("MLC_ONLINE_STORE_CONNECTION", "pod", "steps that read features",
             "secret (by reference): the online store's connection"),
    Variable("MLC_OFFLINE_STORE_CONNECTION", "pod", "steps that read features",
             "secret (by reference): the offline store's connection"),
    Variable("MLC_PUSHGATEWAY_URL", "pod", "drift-check, score, verdict",
             "where the drift check, batch scoring and the A/B verdict push their metrics"),
    Variable("PET_NNODES", "pod", DISTRIBUTED, "the number of nodes (torchrun)"),
    Variable("PET_NODE_RANK", "pod", DISTRIBUTED, "this pod's rank, 0 .. nodes-1"),
    Variable("PET_NPROC_PER_NODE", "pod", DISTRIBUTED,
             "processes per node: the GPUs (or MIG slices) per node, at least 1"),
    Variable("PET_MASTER_ADDR, MASTER_ADDR", "pod", DISTRIBUTED,
             "node 0's stable DNS name"),
    Variable("PET_MASTER_PORT, MASTER_PORT", "pod", DISTRIBUTED, "`29500`"),
    Variable("MLC_ARTIFACT_ROOT", "mlc run", ALL,
             "where a new MLflow experiment keeps its artifacts (`.mlc/mlartifacts`)"),
    Variable(EXPORTS_ENV, "pod", "train, when an endpoint's engine needs an export",
             "comma-separated, of " + ", ".join(f"`{e}`" for e in EXPORTS) + ": what the "
             "step exports and logs to its run under `exports/` "
             "(docs/serving-engines-exports.md)"),
    Variable(EXPORT_BATCHING_ENV, "pod", "train, with the `triton` export",
             "`max_batch_size=N,max_queue_delay_microseconds=N,max_queue_size=N`: the Triton "
             "endpoints' `batching`, written into the repository's config.pbtxt"),
    Variable(TRAIN_DATA_ENV, "runtime", CUSTOM,
             f"`$MLC_RUN_DIR/{DATASET_FILE}`: entity keys, event time, label, features, and "
             "`__split__` = `train` | `test` (test rows are for evaluation only)"),
    Variable(FEATURES_ENV, "runtime", CUSTOM, "JSON list of the input columns, in order"),
    Variable(LABEL_ENV, "runtime", CUSTOM, "the label column"),
    Variable(TASK_ENV, "runtime", CUSTOM,
             "`classification` or `regression` (a ranking model has no custom trainer); "
             "`generative` or `custom` for a model "
             "trained on a `dataset` (then MLC_TRAIN_DATA, MLC_FEATURES and MLC_LABEL are "
             "unset: no validate-data or materialize step ran)"),
    Variable(DATASET_URI_ENV, "runtime", CUSTOM_DATASET,
             "where `dataset` is: the object-store URI (`s3://...`, a glob as written), or "
             "a relative path made absolute against MLC_DATA_ROOT (`mlc run`); `table:` "
             "gives its file source's path"),
    Variable(DATASET_KIND_ENV, "runtime", CUSTOM_DATASET,
             "`files`, `table` or `huggingface` (a `save_to_disk` folder: read it with "
             "`datasets.load_from_disk`)"),
    Variable(DATASET_FORMAT_ENV, "runtime", CUSTOM_DATASET,
             "`dataset.format` (`text`, `jsonl`, `json`, `csv`, `parquet`) or the table "
             "source's format; unset when ml.yaml says none"),
    Variable(HF_TOKEN_ENV, "pod", TRAIN,
             "secret (by reference): `training.custom.huggingFaceTokenSecret`, the Hugging Face "
             "token for gated base models and datasets"),
    Variable(HYPERPARAMETERS_ENV, "runtime", CUSTOM,
             "JSON object: the run's `hyperparameters` parameter"),
    Variable(MODEL_DIR_ENV, "runtime", CUSTOM,
             f"`$MLC_RUN_DIR/{MODEL_DIR}`: save an mlc model here "
             "(`mlc.runtime.model_format.save_model`), or log any MLflow model into "
             "`MLFLOW_RUN_ID` instead (a `dataset` model: an MLflow model only, e.g. "
             "`mlflow.transformers` or `mlflow.pyfunc`)"),
    Variable(METRICS_FILE_ENV, "runtime", CUSTOM,
             f"`$MLC_RUN_DIR/{CUSTOM_METRICS_FILE}`: JSON the command may write, "
             "`{\"name\": value}` or `{\"name\": [[step, value], ...]}`; the metrics declared "
             "in `training.custom.metrics` are gateable, by their last value"),
    Variable(f"{PIPELINE_ENV}, {STEP_ENV}, {RUN_ID_ENV}, {RUN_DIR_ENV}, {DATA_ROOT_ENV}, "
             f"{MODEL_ENV}, {PROJECT_JSON_ENV}, {TRACKING_URI_ENV}", "runtime", CUSTOM,
             "as above, set again (paths absolute) so that the command sees them under "
             "`mlc run` too"),
    Variable(RUN_ID_MLFLOW_ENV, "runtime", CUSTOM,
             "the MLflow run the step opened (lineage tags set): log into it "
             "(`mlflow.start_run(run_id=...)`); the step records its outcome after the "
             "command; with `nodes > 1`, node 0 only"),
    Variable(EXPERIMENT_ID_ENV, "runtime", CUSTOM, "that run's experiment"),
)

FILES: tuple[File, ...] = (
    File(PROJECT_JSON, ALL + " (r)", "the IR, read-only (a ConfigMap)"),
    File(f"{FEAST_REPO}/", ALL + " (r)",
         "`feature_store.yaml` and `features.py`, read-only (a ConfigMap)"),
    File("/tmp", ALL, "scratch space (an emptyDir)"),
    File(f"$MLC_RUN_DIR (`{RUN_DIR}`)", ALL,
         "shared by the run's steps (a volume per run); holds the files below"),
    File(CHECKPOINT_MOUNT, TRAIN, "the checkpoint volume, when ml.yaml names one"),
    File("/dev/shm", TRAIN, "shared memory for data loaders and NCCL"),
    File(VALIDATION_FILE, "validate-data (w)", "the data checks' report"),
    File(f"{VALIDATION_DIR}/<source>.json, .html", "validate-data (w), train (r)",
         "Great Expectations' validation result and its rendered page, per source (the "
         "train step logs them to its MLflow run under `mlc/validation`)"),
    File(DATASET_FILE, "search-start or train (w), search, evaluate (r)",
         "the point-in-time training set; its sha256 is the data snapshot"),
    File(DATA_INFO_FILE, "train (w), evaluate (r)", "rows, split, window of that set"),
    File(MLFLOW_RUN_FILE, "search-start or train (w), search and train (r)",
         "the MLflow run; a retried train step reopens it, trials are its child runs"),
    File(f"{MODEL_DIR}/", "train (w), evaluate (r)",
         "the model in mlc's format (`MLC_MODEL_DIR`), when the trainer saved one"),
    File(CUSTOM_METRICS_FILE, "train (custom command: w)",
         "`MLC_METRICS_FILE`; a `dataset` model's evaluation is these metrics alone"),
    File(TRAIN_FILE, "train (w), evaluate (r)",
         "the MLflow run, the model's URI (any flavour), the final custom metrics"),
    File(EVALUATION_FILE, "evaluate (w), register (r)", "metrics, gates, the champion comparison"),
    File(EXPLAIN_FILE, "explain (w)",
         "mean absolute SHAP value per feature (also logged to the run, with "
         f"`{EXPLAIN_REPORT}`)"),
    File(REGISTER_FILE, "register (w), promote (r)", "the registered version and its alias"),
    File(PROMOTE_FILE, "promote (w)", "whether the production alias moved"),
    File(f"{SUMMARY_DIR}/<step>.json", "validate-data, search-start or train, evaluate, "
         "register, promote, drift-check (w)",
         "`{\"step\": ..., \"facts\": [...]}`: the rows read and dropped, the gate values "
         "against their thresholds, the registered version, the drifted features; what `mlc "
         "run` shows under the step (mlc/runtime/step_summary.py)"),
    File(VERDICT_DECISION_FILE, "verdict (w)",
         "the A/B verdict's decision: `winner`, `no-difference`, `waiting` (too few labels "
         "yet; the step still exits 0) or `failed`; the step's output parameter `decision`"),
)


def names(set_by: SetBy, steps: str | None = None) -> list[str]:
    """The concrete variable names (placeholders like <NAME> left out) set by `set_by`,
    optionally only those given to `steps`."""
    return [n.strip() for v in VARIABLES if v.set_by == set_by
            and (steps is None or v.steps == steps)
            for n in v.name.split(",") if "<" not in n]


# --- the generated part of docs/training-contract.md -------------------------------------
BEGIN = "<!-- BEGIN generated from mlc/step_contract.py ({}): do not edit -->"
END = "<!-- END generated ({}) -->"
_SET_BY = {"pod": "the pod", "runtime": "the step runtime", "mlc run": "`mlc run` only"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def variables_table() -> str:
    lines = ["| Variable | Set by | Steps | Meaning |", "| --- | --- | --- | --- |"]
    for v in VARIABLES:
        names = ", ".join(f"`{n.strip()}`" for n in v.name.split(","))
        lines.append(f"| {names} | {_SET_BY[v.set_by]} | {v.steps} | {_cell(v.meaning)} |")
    return "\n".join(lines)


def files_table() -> str:
    lines = ["| Path | Steps | Contents |", "| --- | --- | --- |"]
    for f in FILES:
        path = f.path if "`" in f.path else f"`{f.path}`"
        lines.append(f"| {path} | {f.steps} | {_cell(f.meaning)} |")
    return "\n".join(lines)


SECTIONS = {"variables": variables_table, "files": files_table}


def render_doc(text: str) -> str:
    """`text` with each generated section replaced by the current table."""
    for name, table in SECTIONS.items():
        begin, end = BEGIN.format(name), END.format(name)
        head, found, rest = text.partition(begin)
        _, found_end, tail = rest.partition(end)
        if not found or not found_end:
            raise ValueError(f"the doc lacks the markers of the `{name}` table")
        text = f"{head}{begin}\n{table()}\n{end}{tail}"
    return text


def search_value_env(name: str) -> str:
    """The variable that carries a Katib trial's value of hyperparameter `name`."""
    return SEARCH_VALUE_PREFIX + name.upper()


def search_value_text(value: object) -> str:
    """A search choice as Katib lists it and hands it to the trial: a string as it is, any
    other value as compact JSON (`[64,32]`, `true`, `0.5`)."""
    import json

    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mlc.step_contract docs/training-contract.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(render_doc(path.read_text("utf-8")), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

