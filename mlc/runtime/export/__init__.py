"""Exports of a trained model for the serving engines that cannot read mlc's model folder.

The training step makes the exports that its variable `MLC_EXPORTS` names (the compiler
sets it from the engines of the endpoints that serve the model: mlc/compiler/resolve/
exports.py) and logs them to the training's MLflow run under `exports/`
(docs/serving-engines-exports.md):

    onnx         exports/onnx/model.onnx             onnx_export.py
    torchscript  exports/torchscript/model.pt        torchscript.py
    triton       exports/triton/<model>/...          triton.py: a Triton model repository,
                                                     ONNX (torch) or FIL (XGBoost, LightGBM)
    torchserve   exports/torchserve/<model>.mar      torchserve.py, torchserve_handler.py

Every torch export is the serving graph of graph.py: the same fill, standardisation,
network and output transform as mlc's server, so that the engine answers what mlc would.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlc import step_contract as sc

ONNX, TORCHSCRIPT, TRITON, TORCHSERVE = sc.EXPORTS


class ExportError(Exception):
    pass


def requested(environ=os.environ) -> list[str]:
    """The exports `MLC_EXPORTS` names, in the contract's order; an unknown name fails."""
    names = [n.strip() for n in environ.get(sc.EXPORTS_ENV, "").split(",") if n.strip()]
    unknown = sorted(set(names) - set(sc.EXPORTS))
    if unknown:
        raise ExportError(f"{sc.EXPORTS_ENV} names unknown export(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sc.EXPORTS)})")
    return [n for n in sc.EXPORTS if n in names]


def batching(environ=os.environ):
    from .triton import Batching

    text = environ.get(sc.EXPORT_BATCHING_ENV, "")
    if not text:
        raise ExportError(f"the Triton export needs {sc.EXPORT_BATCHING_ENV} (the endpoint's "
                          "batching), which this step's environment lacks")
    try:
        return Batching.parse(text)
    except ValueError as exc:
        raise ExportError(f"{sc.EXPORT_BATCHING_ENV}: {exc}") from exc


def is_tree_model(folder: Path | str) -> bool:
    folder = Path(folder)
    return (folder / "model.json").is_file() or (folder / "model.txt").is_file()


def make_exports(folder: Path | str, names: list[str], out: Path | str, *, model_name: str,
                 task: str | None = None, triton_batching=None) -> list[Path]:
    """Write the exports `names` of the model in `folder` under `out`, laid out as they are
    logged (`out/onnx/model.onnx`, ...); returns the files written."""
    from mlc.runtime import model_format

    from . import onnx_export, torchscript, torchserve, triton

    out = Path(out)
    written: list[Path] = []
    tree = is_tree_model(folder)
    if tree and set(names) - {TRITON}:
        raise ExportError(f"a tree model (model.json or model.txt in {folder}) is exported "
                          f"for Triton's FIL backend only, not as {', '.join(names)}")
    if not tree:
        folder = model_format.model_dir(folder)
    if ONNX in names:
        written.append(onnx_export.export_onnx(folder, out / ONNX / onnx_export.FILE))
    if TORCHSCRIPT in names:
        written.append(torchscript.export_torchscript(folder, out / TORCHSCRIPT
                                                      / torchscript.FILE))
    if TRITON in names:
        if triton_batching is None:
            raise ExportError("the Triton export needs the endpoint's batching")
        repo = out / TRITON
        if tree:
            if task is None:
                raise ExportError("the Triton FIL export needs the model's task")
            model_type, model_file = triton.fil_model_type(folder)
            model = triton.write_fil_repository(repo, model_name, model_file, model_type,
                                                task, triton_batching)
        else:
            model = triton.write_onnx_repository(repo, model_name, folder, triton_batching)
        written.extend(sorted(p for p in model.rglob("*") if p.is_file()))
    if TORCHSERVE in names:
        pt = out / TORCHSCRIPT / torchscript.FILE
        written.append(torchserve.write_mar(out / TORCHSERVE / f"{model_name}.mar", model_name,
                                            folder, torchscript_file=pt if pt.is_file()
                                            else None))
    return written


def log_exports(client, run_id: str, out: Path | str) -> None:
    """The folder `make_exports` wrote, logged to the run under `exports/`, and the run
    tagged with what it holds."""
    out = Path(out)
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    client.log_artifacts(run_id, str(out), sc.EXPORTS_ARTIFACT_DIR)
    client.set_tag(run_id, sc.EXPORTS_TAG, ",".join(n for n in sc.EXPORTS if n in names))
