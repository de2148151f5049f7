"""`python -m mlc.runtime fetch-model`: a registered model, laid out for a serving engine.

The init container of an engine's InferenceService runs it (compiler: backends/serving/
engines.py). It resolves the registry URI (`models:/<name>@<alias>` or
`models:/<name>/<version>`, which KServe's storage initializer does not read) to one
version, and writes into `--dest` (the emptyDir the engine reads as `/mnt/models`):

    mlflow      the version's MLflow model (MLmodel at the top), for MLServer's MLflow
                runtime
    triton      the Triton model repository the train step exported
                (`exports/triton/` of the version's run): `<model>/config.pbtxt`,
                `<model>/1/...`
    torchserve  `model-store/<model>.mar` (`exports/torchserve/` of the run) and
                `config/config.properties`, which registers it with the endpoint's
                batching and serves metrics in Prometheus' format
    huggingface the Hugging Face folder (config, weights, tokenizer) of the version's MLflow
                transformers model, which KServe's Hugging Face runtime (vLLM) reads

An export the run does not hold fails the fetch (exit 1, the pod does not start), naming
what the compiler should have asked the train step for (docs/serving-engines-exports.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from mlc import step_contract as sc

LAYOUTS = ("mlflow", "triton", "torchserve", "huggingface")
# TorchServe behind KServe's wrapper: the wrapper answers on 8080 and forwards to 8085
TORCHSERVE_PORTS = {"inference_address": "http://0.0.0.0:8085",
                    "management_address": "http://0.0.0.0:8085",
                    "metrics_address": "http://0.0.0.0:8082",
                    "grpc_inference_port": "7070", "grpc_management_port": "7071"}


class FetchFailed(Exception):
    pass


def parse_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of `models:/<name>@<alias>` or `models:/<name>/<version>`, as
    the server's loader reads it; a version must be a number here (the pod pins one)."""
    from .loader import ModelLoadError, parse_model_uri

    try:
        name, alias, version = parse_model_uri(uri)
    except ModelLoadError as exc:
        raise FetchFailed(str(exc)) from exc
    if version is not None and not version.isdigit():
        raise FetchFailed(f"`{uri}` names no alias and no version number")
    return name, alias, version


def resolve_version(client, uri: str):
    name, alias, version = parse_uri(uri)
    if alias is not None:
        return client.get_model_version_by_alias(name, alias)
    return client.get_model_version(name, version)


def _run_exports(client, run_id: str) -> set[str]:
    tag = client.get_run(run_id).data.tags.get(sc.EXPORTS_TAG, "")
    return {t for t in tag.split(",") if t}


def _download_export(client, run_id: str, export: str, tmp: Path) -> Path:
    if export not in _run_exports(client, run_id):
        raise FetchFailed(f"run {run_id} holds no `{export}` export (its tag "
                          f"{sc.EXPORTS_TAG} lists what it holds): the model was trained "
                          "before this endpoint's engine asked for it; retrain it")
    return Path(client.download_artifacts(run_id, f"{sc.EXPORTS_ARTIFACT_DIR}/{export}",
                                          str(tmp)))


def torchserve_config(model_name: str, mar: str, *, max_batch_size: int,
                      max_batch_delay_ms: int, max_queue: int) -> str:
    snapshot = {"name": "startup.cfg", "modelCount": 1, "models": {model_name: {"1.0": {
        "defaultVersion": True, "marName": mar, "minWorkers": 1, "maxWorkers": 1,
        "batchSize": max_batch_size, "maxBatchDelay": max_batch_delay_ms,
        "responseTimeout": 120}}}}
    lines = [f"{k}={v}" for k, v in TORCHSERVE_PORTS.items()] + [
        "enable_metrics_api=true", "metrics_mode=prometheus", "metrics_format=prometheus",
        f"job_queue_size={max_queue}", "enable_envvars_config=true",
        "install_py_dep_per_model=false", "model_store=/mnt/models/model-store",
        "model_snapshot=" + json.dumps(snapshot, sort_keys=True, separators=(",", ":"))]
    return "\n".join(lines) + "\n"


def fetch(client, args: argparse.Namespace) -> dict:
    version = resolve_version(client, args.model_uri)
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.layout == "mlflow":
            _move_children(_download_model(version, tmp), dest)
        elif args.layout == "triton":
            repo = _download_export(client, version.run_id, "triton", Path(tmp))
            if not (repo / args.model_name / "config.pbtxt").is_file():
                raise FetchFailed(f"the run's Triton repository has no model "
                                  f"`{args.model_name}`")
            _move_children(repo, dest)
        elif args.layout == "huggingface":
            _hugging_face_folder(_download_model(version, tmp), dest)
        else:
            folder = _download_export(client, version.run_id, "torchserve", Path(tmp))
            mar = f"{args.model_name}.mar"
            if not (folder / mar).is_file():
                raise FetchFailed(f"the run's TorchServe export has no `{mar}`")
            (dest / "model-store").mkdir(exist_ok=True)
            shutil.move(str(folder / mar), dest / "model-store" / mar)
            (dest / "config").mkdir(exist_ok=True)
            (dest / "config" / "config.properties").write_text(torchserve_config(
                args.model_name, mar, max_batch_size=args.max_batch_size,
                max_batch_delay_ms=args.max_batch_delay_ms, max_queue=args.max_queue),
                "utf-8")
    return {"model_uri": args.model_uri, "name": version.name,
            "version": int(version.version), "run_id": version.run_id,
            "layout": args.layout, "dest": str(dest)}


def _download_model(version, tmp: str) -> Path:
    """The version's MLflow model, by the loader's download (the registry's own URI)."""
    from .loader import ModelLoadError, download

    try:
        return download(version.name, str(version.version), os.environ["MLFLOW_TRACKING_URI"],
                        Path(tmp))
    except ModelLoadError as exc:
        raise FetchFailed(str(exc)) from exc


def _hugging_face_folder(model: Path, dest: Path) -> None:
    """The weights and the tokenizer of an MLflow transformers model, side by side, as
    `save_pretrained` writes them (MLflow keeps them in `model/` and `components/`)."""
    import yaml

    meta = yaml.safe_load((model / "MLmodel").read_text("utf-8"))
    flavour = (meta.get("flavors") or {}).get("transformers")
    if flavour is None:
        raise FetchFailed("the registered model has no `transformers` flavour: vLLM serves a "
                          "Hugging Face model, which the trainer logs with "
                          "mlflow.transformers.log_model")
    weights = model / str(flavour.get("model_binary", "model"))
    if not (weights / "config.json").is_file():
        raise FetchFailed("the transformers model holds no saved weights (logged with "
                          "save_pretrained=False, a reference to the Hub): log it with "
                          "save_pretrained=True")
    _move_children(weights, dest)
    for component in flavour.get("components") or []:
        folder = model / "components" / str(component)
        if folder.is_dir():
            _move_children(folder, dest)


def _move_children(src: Path, dest: Path) -> None:
    for child in sorted(src.iterdir()):
        target = dest / child.name
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.move(str(child), target)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlc.runtime fetch-model")
    p.add_argument("--model-uri", required=True)
    p.add_argument("--layout", required=True, choices=LAYOUTS)
    p.add_argument("--model-name", required=True)
    p.add_argument("--dest", required=True)
    p.add_argument("--max-batch-size", type=int, default=1)
    p.add_argument("--max-batch-delay-ms", type=int, default=0)
    p.add_argument("--max-queue", type=int, default=100)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    tracking = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking:
        print("error: MLFLOW_TRACKING_URI is not set", file=sys.stderr)
        return 1
    from mlc.runtime.train.tracking import client_for

    try:
        done = fetch(client_for(tracking), args)
    except FetchFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(done, sort_keys=True))
    return 0
