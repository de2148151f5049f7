"""Small projects for the Argo backend's tests, and helpers to compile them.

Each project is a dict written as JSON (valid YAML 1.2) into ml.yaml, so that a test can
change one setting with `project(...)` and a deep merge instead of editing YAML text.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from mlc.compiler.backends import argo
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.ir import ResolvedProject
from mlc.compiler.pipeline import check_environment

BASE: dict[str, Any] = {
    "apiVersion": "mlc.dev/v1",
    "kind": "Project",
    "metadata": {"name": "demo"},
    "platform": {"imagePolicy": "tag"},
    "hardware": {"cpu-small": {"cpu": "500m", "memory": "1Gi"}},
    "sources": {"events": {"type": "file", "path": "data/events.parquet", "columns": [
        {"name": "user_id", "type": "int64"},
        {"name": "event_timestamp", "type": "unix_timestamp"},
        {"name": "clicks", "type": "int64"},
        {"name": "label", "type": "int64"}]}},
    "entities": {"user": {"joinKey": "user_id"}},
    "features": {"user_stats": {"entities": ["user"], "source": "events",
                                "fields": [{"name": "clicks", "type": "int64"}]}},
    "models": {"churn": {"task": "classification", "inputs": {"features": ["user_stats"]},
                         "label": {"source": "events", "column": "label"},
                         "training": {"hardware": "cpu-small"}}},
    "serving": {"churn-api": {"model": "churn", "hardware": "cpu-small"}},
    "monitoring": {
        "drift": {"churn-drift": {"endpoint": "churn-api", "routes": ["team"],
                                  "onDrift": {"action": "retrain", "cooldown": "12h",
                                              "maxRuns": 3, "per": "7d"}}},
        "routes": {"team": {"webhook": {"url": "https://alerts.example.com/hook"}}},
        "webhookSecret": "drift-webhook",
    },
    "secrets": {"drift-webhook": {"kubernetes": {"name": "drift-webhook", "key": "token"}}},
}

GPU = {"hardware": {"h100": {"cpu": "16", "memory": "128Gi",
                             "gpu": {"type": "NVIDIA-H100-80GB-HBM3", "count": 2},
                             "spot": True, "priorityClass": "ml-batch", "queue": "gpu-train",
                             "tolerations": [{"key": "dedicated", "value": "training",
                                              "effect": "NoSchedule"}]}},
       "models": {"churn": {"training": {"hardware": "h100"}}}}

MIG = {"hardware": {"mig": {"cpu": "4", "memory": "16Gi",
                            "gpu": {"type": "NVIDIA-A100-SXM4-40GB", "count": 1,
                                    "mig": "1g.5gb"}}},
       "models": {"churn": {"training": {"hardware": "mig"}}}}

DISTRIBUTED = {
    "platform": {"runVolume": {"accessMode": "ReadWriteMany", "storageClass": "shared-nfs"}},
    "hardware": {"a100x4": {"cpu": "32", "memory": "256Gi",
                            "gpu": {"type": "NVIDIA-A100-SXM4-80GB", "count": 4},
                            "queue": "train-queue"}},
    # several nodes take a custom trainer that knows its rank (the builtin one is refused)
    "models": {"churn": {"training": {
        "custom": {"image": "ghcr.io/acme/trainer:1", "command": ["python", "-m", "train"]},
        "hardware": "a100x4", "nodes": 2,
        "checkpoint": {"volume": "checkpoints", "path": "churn"},
        "retries": {"limit": 4, "backoff": {"duration": "1m", "factor": 3,
                                            "maxDuration": "20m"}}}}},
}

# An A/B endpoint with a verdict on labels that arrive in their own file
AB_VERDICT = {
    "sources": {"outcomes": {"type": "file", "path": "data/outcomes.parquet", "columns": [
        {"name": "request_id", "type": "string"}, {"name": "label", "type": "int64"},
        {"name": "event_timestamp", "type": "unix_timestamp"}]}},
    "serving": {"churn-ab": {"model": "churn", "hardware": "cpu-small", "rollout": {
        "strategy": "ab", "assignment": {"header": "x-user-id"},
        "variants": [{"name": "a", "version": 1, "weight": 50},
                     {"name": "b", "version": 2, "weight": 50}],
        "verdict": {"labels": "outcomes", "metric": "roc_auc", "schedule": "0 */4 * * *"}}}},
}


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(patch)


def project(*patches: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    for patch in patches:
        out = merge(out, patch)
    return out


def check(folder: Path, doc: dict[str, Any]) -> tuple[ResolvedProject | None, Diagnostics]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ml.yaml").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    diags = Diagnostics()
    return check_environment(folder, "default", diags), diags


def resolve(folder: Path, doc: dict[str, Any]) -> ResolvedProject:
    resolved, diags = check(folder, doc)
    assert resolved is not None and not diags.has_errors(), [d.message for d in diags.items]
    return resolved


def resolve_dir(root: Path, env: str) -> ResolvedProject:
    """An existing project folder (the bundled example), one environment."""
    diags = Diagnostics()
    resolved = check_environment(root, env, diags)
    assert resolved is not None and not diags.has_errors(), [d.message for d in diags.items]
    return resolved


def emit(resolved: ResolvedProject) -> dict[str, list[dict[str, Any]]]:
    """The Argo backend's files, each as a list of objects."""
    return {f.path: (list(f.content) if isinstance(f.content, (list, tuple)) else [f.content])
            for f in argo.emit(resolved)}


def objects(files: dict[str, list[dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [o for docs in files.values() for o in docs if o["kind"] == kind]


def template(workflow_template: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in workflow_template["spec"]["templates"] if t["name"] == name)


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}
