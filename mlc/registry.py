"""The MLflow model registry, read by `mlc pin` (the compiler itself never imports MLflow)."""

from __future__ import annotations

import os


def alias_versions(tracking_uri: str, arms: list[tuple[str, str, str, str]]
                   ) -> tuple[dict[tuple[str, str], int], list[str]]:
    """The version each arm's alias points at now, by (endpoint, arm); and what failed.

    `arms`: (endpoint, arm, registered model, alias), as mlc/compiler/pin.py lists them.
    """
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # a plain folder store is fine
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    versions, problems = {}, []
    for endpoint, arm, model, alias in arms:
        try:
            found = client.get_model_version_by_alias(model, alias)
        except MlflowException as exc:
            problems.append(f"{model}@{alias} ({endpoint}, {arm}): {exc.message}")
            continue
        versions[(endpoint, arm)] = int(found.version)
    return versions, problems
