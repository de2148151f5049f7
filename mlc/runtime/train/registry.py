"""The MLflow model registry, by aliases only (stages are deprecated; mlc never sets them).

register: a candidate that passed evaluation becomes a new version of the registered model,
          tagged with its lineage, and takes the candidate alias (`challenger`).
promote:  with the pipeline parameter promote=true, the production alias (`champion`) moves
          to that version; the endpoints serving `models:/<name>@champion` pick it up.
          promote=if-none moves it only when no version holds it yet: `mlc run` uses this
          so that a fresh project has something to serve, without ever replacing a champion.
`promote_version` is the same move for `mlc promote`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlc.runtime import step_summary
from mlc.runtime.step import StepContext, StepFailed
from mlc.step_contract import EVALUATION_FILE, PROMOTE_FILE, REGISTER_FILE

LINEAGE_TAGS = ("mlc.project", "mlc.environment", "mlc.source_hash", "mlc.git_commit",
                "mlc.feature_service", "mlc.data_snapshot", "mlc.pipeline_run", "mlc.reason",
                "mlc.dataset")


def alias_version(client, name: str, alias: str):
    """The model version holding `alias`, or None (no such model, or no such alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def download_model(model_uri: str, dst: str | Path) -> Path:
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))


def promote_version(tracking_uri: str, name: str, version: int | str, alias: str) -> str | None:
    """Point `alias` at `version`; returns the version that held it before, if any."""
    from mlc.runtime.train.tracking import client_for

    client = client_for(tracking_uri)
    before = alias_version(client, name, alias)
    client.get_model_version(name, str(version))  # fails clearly if there is no such version
    client.set_registered_model_alias(name, alias, str(version))
    return before.version if before is not None else None


def _read(ctx: StepContext, name: str) -> dict[str, Any]:
    path = ctx.run_dir / name
    if not path.is_file():
        raise StepFailed(f"no {name} in {ctx.run_dir}: the step before did not run")
    return json.loads(path.read_text("utf-8"))


def register(ctx: StepContext) -> None:
    from mlflow.exceptions import MlflowException

    from mlc.runtime.train.tracking import client_for

    model = ctx.model
    evaluation = _read(ctx, EVALUATION_FILE)
    if not evaluation.get("passed"):
        raise StepFailed("the evaluation did not pass: nothing to register")
    client = client_for(ctx.mlflow_tracking_uri)
    record = ctx.run_dir / REGISTER_FILE
    if record.is_file():  # a retried step: the version exists already
        done = json.loads(record.read_text("utf-8"))
        print(f"{model.registered_name} version {done['version']} is registered already")
        _summary(ctx, "registered", done)
        return
    try:
        client.get_registered_model(model.registered_name)
    except MlflowException:
        client.create_registered_model(
            model.registered_name, description=model.description or None,
            tags={"mlc.project": ctx.project.name, "mlc.model": model.name})
    run = client.get_run(evaluation["mlflow_run_id"])
    tags = {k: v for k, v in run.data.tags.items() if k in LINEAGE_TAGS}
    tags.update({f"metric.{k}": f"{v:.6g}" for k, v in sorted(evaluation["metrics"].items())})
    import mlflow

    # register_model resolves MLflow 3's logged-model URIs (models:/m-...) to their source
    version = mlflow.register_model(evaluation["model_uri"], model.registered_name, tags=tags)
    _wait_ready(client, model.registered_name, version.version)
    client.update_model_version(model.registered_name, version.version,
                                description=f"trained by pipeline {ctx.pipeline.name} "
                                f"({ctx.run_id})")
    client.set_registered_model_alias(model.registered_name, model.candidate_alias,
                                      version.version)
    result = {"name": model.registered_name, "version": int(version.version),
              "alias": model.candidate_alias, "model_uri": evaluation["model_uri"],
              "mlflow_run_id": run.info.run_id}
    record.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", "utf-8")
    _summary(ctx, "registered", result)
    print(f"registered {model.registered_name} version {version.version} as "
          f"@{model.candidate_alias}")


def _wait_ready(client, name: str, version: str, timeout: float = 300.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        status = client.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise StepFailed(f"{name} version {version} did not become ready ({status})")
        time.sleep(1.0)


def promote(ctx: StepContext) -> None:
    from mlc.runtime.train.tracking import client_for

    model = ctx.model
    registered = _read(ctx, REGISTER_FILE)
    wanted = ctx.param("promote", "false").strip().lower()
    alias = model.production_alias
    if wanted not in ("true", "false", "if-none"):
        raise StepFailed(f"parameter promote must be true, false or if-none, got `{wanted}`")
    client = client_for(ctx.mlflow_tracking_uri)
    holder = alias_version(client, model.registered_name, alias)
    record = {"name": model.registered_name, "version": registered["version"], "alias": alias,
              "promoted": False, "holder": int(holder.version) if holder is not None else None}
    if wanted == "false" or (wanted == "if-none" and holder is not None):
        held = f" (version {holder.version} holds it)" if holder is not None else ""
        print(f"not promoted: @{alias} stays where it is{held}; to promote version "
              f"{registered['version']}, run `mlc promote` or the pipeline with promote=true")
    else:
        before = promote_version(ctx.mlflow_tracking_uri, model.registered_name,
                                 registered["version"], alias)
        record.update(promoted=True, holder=int(registered["version"]))
        moved = f" (was version {before})" if before else ""
        print(f"promoted {model.registered_name} version {registered['version']} to "
              f"@{alias}{moved}")
    (ctx.run_dir / PROMOTE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n",
                                            "utf-8")
    _summary(ctx, "promoted", record)


def _summary(ctx: StepContext, kind: str, record: dict) -> None:
    fact = {"kind": kind, "model": record["name"], "version": record["version"],
            "alias": record["alias"]}
    if kind == "promoted":
        fact.update(promoted=record["promoted"], holder=record["holder"])
    step_summary.write(ctx, [fact])
