"""The MLflow run of a training: lineage tags, parameters, the logged model, the outcome.

Per-step metrics go through `metric_log`, which keeps their cost out of the training loop.

Lineage tags are set on every run (the `TAG_*` names), so that a registered model version
leads back to the ml.yaml it was compiled from, the code, the features and the data.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path
from typing import Any

from mlc import step_contract as sc
from mlc.step_contract import MLFLOW_RUN_FILE

TAG_PROJECT = "mlc.project"
TAG_ENV = "mlc.environment"
TAG_MODEL = "mlc.model"
TAG_PIPELINE = "mlc.pipeline"
TAG_PIPELINE_RUN = "mlc.pipeline_run"
TAG_REASON = "mlc.reason"
TAG_SOURCE = "mlc.source"
TAG_SOURCE_HASH = "mlc.source_hash"  # sha256 of ml.yaml + the environment overlay
TAG_GIT_COMMIT = "mlc.git_commit"
TAG_FEATURE_SERVICE = "mlc.feature_service"
TAG_DATA_SNAPSHOT = "mlc.data_snapshot"
TAG_DATA_VERSION = "mlc.data_version"  # .<source>: the version read; .<source>.pinned
TAG_DATA_WINDOW = "mlc.data_window"
TAG_TRAINER = "mlc.trainer"  # builtin or custom
TAG_DATASET = "mlc.dataset"  # a generative or custom model's dataset: its location
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
MLFLOW_USER = "mlflow.user"
MLFLOW_SOURCE_TYPE = "mlflow.source.type"
MLFLOW_SOURCE_NAME = "mlflow.source.name"


def experiment_name(project: str, model: str) -> str:
    return f"{project}/{model}"


def git_commit(root: Path) -> str | None:
    """The commit the run's code came from: MLC_GIT_COMMIT (set by the pipeline), or git."""
    import os

    if value := os.environ.get("MLC_GIT_COMMIT"):
        return value
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def lineage_tags(ctx, model, snapshot: str | None, trainer: str) -> dict[str, str]:
    project = ctx.project
    tags = {
        TAG_PROJECT: project.name, TAG_ENV: project.env, TAG_MODEL: model.name,
        TAG_PIPELINE: ctx.pipeline.name, TAG_PIPELINE_RUN: ctx.run_id,
        TAG_REASON: ctx.param("reason", "manual"), TAG_SOURCE: project.source,
        TAG_SOURCE_HASH: project.source_hash, TAG_FEATURE_SERVICE: model.feature_service,
        TAG_DATA_WINDOW: ctx.param("data_window_seconds", "0"), TAG_TRAINER: trainer,
    }
    if snapshot:
        tags[TAG_DATA_SNAPSHOT] = snapshot
    if model.dataset is not None:
        tags[TAG_DATASET] = model.dataset.uri
    tags.update(data_version_tags(ctx, model))
    if commit := git_commit(ctx.data_root):
        tags[TAG_GIT_COMMIT] = tags[MLFLOW_GIT_COMMIT] = commit
    # MLflow's own tags, which its UI and other tools read
    tags.update({MLFLOW_USER: run_user(ctx), MLFLOW_SOURCE_TYPE: "JOB",
                 MLFLOW_SOURCE_NAME: f"{ctx.pipeline.name}/{ctx.step.name}"})
    return tags


def run_user(ctx) -> str:
    """Who ran it: in a pod, its service account (pods have no login); else the OS user."""
    import getpass
    import os

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        p = ctx.project.platform
        return f"system:serviceaccount:{p.namespace}:{p.service_account}"
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry
        return "mlc"


def client_for(tracking_uri: str):
    import mlflow
    from mlflow.tracking import MlflowClient

    from mlc.runtime.mlflow_plugins import skip_unused_header_plugins

    skip_unused_header_plugins()
    mlflow.set_tracking_uri(tracking_uri)
    # the model registry lives in the same store: a registry URI set earlier in the process
    # (MLflow keeps it globally) must not send aliases and versions somewhere else
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(client, name: str) -> str:
    """The experiment's id, created if needed. MLC_ARTIFACT_ROOT (set by `mlc run`) says
    where a new experiment keeps its artifacts; otherwise the tracking server decides."""
    import os

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = os.environ.get("MLC_ARTIFACT_ROOT")
    location = f"{root.rstrip('/')}/{name.replace('/', '-')}" if root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by a concurrent run
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


RUN_FILE = MLFLOW_RUN_FILE  # in the run folder: a retried train step reopens this run
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


# Counts of the training data's feature join (data.count_rows_without_features).
def data_version_tags(ctx, model) -> dict[str, str]:
    """`mlc.data_version.<source>`: the version each pinned source was read at (the DVC
    commit, the lakeFS commit, the object version id), and what ml.yaml pinned."""
    from mlc.runtime.sources import versions
    from mlc.runtime.train.validation import sources_of

    tags = {}
    for name in sources_of(model, ctx.project):
        source = ctx.project.sources[name]
        if source.version is not None:
            found = versions.resolve(ctx, source)
            tags[f"{TAG_DATA_VERSION}.{name}"] = found["resolved"]
            tags[f"{TAG_DATA_VERSION}.{name}.pinned"] = found["label"]
            if "md5" in found:
                tags[f"{TAG_DATA_VERSION}.{name}.md5"] = found["md5"]
    return tags


DATA_METRICS = ("label_rows", "dropped_rows", "rows_without_features", "dropped_share")


class TrackedRun:
    """The MLflow run of one training: opened by the train step, read by later steps."""

    def __init__(self, client, run_id: str, experiment_id: str, ctx):
        self.client, self.run_id, self.experiment_id, self.ctx = client, run_id, \
            experiment_id, ctx

    @classmethod
    def open(cls, ctx, model, dataset, *, trainer: str) -> TrackedRun:
        import json

        client = client_for(ctx.mlflow_tracking_uri)
        experiment_id = ensure_experiment(client, experiment_name(ctx.project.name, model.name))
        record = ctx.run_dir / RUN_FILE
        run_id = None
        if record.is_file():
            previous = json.loads(record.read_text("utf-8"))
            if previous.get("data_snapshot") == (dataset.snapshot if dataset else None):
                run_id = previous["run_id"]
                client.update_run(run_id, status="RUNNING")
        if run_id is None:
            tags = lineage_tags(ctx, model, dataset.snapshot if dataset else None, trainer)
            tags["mlflow.runName"] = f"{model.name}-{ctx.run_id}"
            run_id = client.create_run(experiment_id, tags=tags).info.run_id
            record.write_text(json.dumps({"run_id": run_id, "data_snapshot": dataset.snapshot
                                          if dataset else None}) + "\n", "utf-8")
        return cls(client, run_id, experiment_id, ctx)

    def log_params(self, hp: dict[str, Any], dataset) -> None:
        from mlflow.entities import Param

        params = {k: json_value(v) for k, v in sorted(hp.items())}
        if dataset is not None:
            info = dataset.info
            params.update({"data_rows": str(info["rows"]), "train_rows": str(info["train_rows"]),
                           "test_rows": str(info["test_rows"]),
                           "data_window_start": str(info.get("window_start")),
                           "data_window_end": str(info.get("window_end")),
                           "data_retrieval": info["retrieval"]})
        existing = self.client.get_run(self.run_id).data.params
        fresh = [Param(k, v[:6000]) for k, v in params.items() if k not in existing]
        if fresh:
            self.client.log_batch(self.run_id, params=fresh, synchronous=True)
        if dataset is not None:
            self._log_data_metrics(dataset.info)

    def _log_data_metrics(self, info: dict[str, Any]) -> None:
        """What the feature join lost, as metrics: comparable across runs and gateable."""
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(f"data_{key}", float(info[key]), stamp, 0)
                   for key in DATA_METRICS if info.get(key) is not None]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics, synchronous=True)

    def log_model(self, folder: Path, dataset, spec: dict[str, Any]) -> str:
        """Log the model folder as a pyfunc model with signature and input example. The
        signature's input types are ml.yaml's (an int64 feature stays long), its output the
        `prediction` column (or one per class)."""
        import mlflow
        import pandas as pd
        import torch
        from mlflow.models import infer_signature

        from mlc.runtime import model_format
        from mlc.runtime.train.scoring import typed_inputs

        model = self.ctx.model
        example = dataset.part("train").dropna(subset=spec["features"]).head(5) \
            if dataset is not None else pd.DataFrame(columns=spec["features"])
        example = typed_inputs(example, model, spec["features"]).reset_index(drop=True)
        module, _ = model_format.load_model(folder)
        output = model_format.pyfunc_output(
            spec, model_format.predict_frame(module, spec, example)) if len(example) else None
        signature = infer_signature(example, output)
        signature.inputs = input_schema(model, spec["features"])
        requirements = [f"torch=={torch.__version__.split('+')[0]}",
                        f"mlflow=={mlflow.__version__}", "numpy", "pandas"]
        arch = spec["architecture"]
        if arch.get("library") and arch.get("library_version"):
            requirements.append(f"{arch['library']}=={arch['library_version']}")
            if arch["type"] == "sklearn":
                import skops

                requirements.append(f"skops=={skops.__version__}")
        mlflow.set_experiment(experiment_id=self.experiment_id)  # where the logged model goes
        # MLflow's advice (type hints on predict, integer columns that could be missing)
        # does not apply: the types are ml.yaml's, the reader fills missing values
        with warnings.catch_warnings(), mlflow.start_run(
                run_id=self.run_id, experiment_id=self.experiment_id,
                nested=mlflow.active_run() is not None):
            warnings.simplefilter("ignore", UserWarning)
            if dataset is not None:
                source = dataset.info.get("label_location", "")
                mlflow.log_input(mlflow.data.from_pandas(
                    dataset.part("train"), source=source, name="training",
                    targets=spec["label"]), context="training")
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(PYFUNC_CODE),
                artifacts={model_format.ARTIFACT_KEY: str(folder)}, signature=signature,
                input_example=example if len(example) else None,
                # the format's reader travels with the model: loading it needs no mlc
                code_paths=[model_format.__file__], pip_requirements=requirements)
        return info.model_uri

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finish(self, summary: dict[str, Any], status: str = "FINISHED") -> None:
        from mlflow.entities import RunTag

        tags = [RunTag("mlc.model_uri", str(summary.get("model_uri", ""))),
                RunTag("mlc.device", str(summary.get("device", ""))),
                RunTag("mlc.precision", str(summary.get("precision", "")))]
        self.client.log_batch(self.run_id, tags=tags, synchronous=True)
        for name in ("data/data.json", "validation.json"):
            if (self.ctx.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.ctx.run_dir / name), "mlc")
        gx_reports = self.ctx.run_dir / sc.VALIDATION_DIR
        if gx_reports.is_dir():
            self.client.log_artifacts(self.run_id, str(gx_reports), "mlc/validation")
        self.client.set_terminated(self.run_id, status=status)


# ml.yaml's value types as MLflow's column types; derived features are float64
MLFLOW_TYPES = {"int32": "integer", "int64": "long", "float32": "float", "float64": "double",
                "bool": "boolean", "string": "string"}


def input_schema(model, features: list[str]):
    """The signature's inputs, typed as ml.yaml declares the features (not as inferred from
    a sample, where a missing value would turn an int64 column into double)."""
    from mlflow.types import ColSpec, Schema

    types = {ref.field: ref.type for ref in model.features}
    return Schema([ColSpec(MLFLOW_TYPES.get(types.get(name, "float64"), "double"), name)
                   for name in features])


def json_value(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)
