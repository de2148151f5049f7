"""TorchServe: a model archive (.mar) of the TorchScript export.

A .mar is a zip (TorchServe's docs, and torch-model-archiver's default format) holding the
serialized model, the handler module and extra files at its root, and MAR-INF/MANIFEST.json
naming them:

    model.pt                 the TorchScript serving graph (torchscript.py)
    mlc_handler.py           the handler (torchserve_handler.py)
    spec.json                the mlc model's spec: the features' order, the classes
    MAR-INF/MANIFEST.json    {"runtime": "python", "model": {"modelName", "serializedFile",
                             "handler", "modelVersion"}, "archiverVersion"}

The archive is written here rather than by torch-model-archiver, which stages files in a
shared temporary folder named after the model and stamps the time into the manifest; here
the entries are in a fixed order with a fixed time, so the same model file gives the same
archive. The manifest's fields are those torch-model-archiver 0.12 writes, less
`createdOn` (TorchServe does not read it).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from mlc.runtime import model_format

HANDLER_SOURCE = Path(__file__).with_name("torchserve_handler.py")
HANDLER_FILE = "mlc_handler.py"
SERIALIZED_FILE = "model.pt"
MANIFEST = "MAR-INF/MANIFEST.json"
ARCHIVER_VERSION = "0.12.0"  # the manifest format this writes (torch-model-archiver's)
_STAMP = (1980, 1, 1, 0, 0, 0)  # zip's earliest time: the entries carry no build time


def manifest(model_name: str, version: str) -> dict:
    return {"runtime": "python",
            "model": {"modelName": model_name, "serializedFile": SERIALIZED_FILE,
                      "handler": HANDLER_FILE, "modelVersion": version},
            "archiverVersion": ARCHIVER_VERSION}


def write_mar(path: Path | str, model_name: str, folder: Path | str, *,
              version: str = "1.0", torchscript_file: Path | str | None = None) -> Path:
    """`<path>` (a .mar) of the mlc model in `folder`; `torchscript_file` is its TorchScript
    export, made here when not given."""
    from .torchscript import torchscript_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = Path(torchscript_file).read_bytes() if torchscript_file \
        else torchscript_bytes(folder)
    spec = (model_format.model_dir(folder) / model_format.SPEC_FILE).read_bytes()
    entries = [
        (MANIFEST, (json.dumps(manifest(model_name, version), indent=2, sort_keys=True)
                    + "\n").encode("utf-8")),
        (HANDLER_FILE, HANDLER_SOURCE.read_bytes()),
        (SERIALIZED_FILE, model),
        (model_format.SPEC_FILE, spec),
    ]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return path
