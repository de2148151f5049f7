"""The batch_score step: score a source with the endpoint's model, write the predictions.

The model comes from the registry exactly as the server loads it (loader.py: by alias,
weights only). The input source's rows get the model's features from the source itself
when it has those columns, else as of each row's time from the feature views (Feast's
offline store, or the file sources), the same join training used. The output (Parquet, or
CSV when the path ends in .csv; a local path or an object-store URI) holds the entity keys,
the event time, `prediction` (per class `prediction_<class>` for multi-class models) and
`model_version`, and replaces the previous file in one rename.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlc.runtime.step import StepContext, StepFailed

CHUNK_ROWS = 65_536  # rows per model call: bounded memory for any input size


def run(ctx: StepContext) -> None:
    from mlc.runtime.train import data

    from .loader import ModelLoadError, load

    endpoint = ctx.project.endpoints.get(ctx.pipeline.endpoint or "")
    if endpoint is None or endpoint.batch is None:
        raise StepFailed(f"pipeline `{ctx.pipeline.name}` has no batch endpoint to score")
    try:
        model = load(endpoint.model_uri, ctx.mlflow_tracking_uri)
    except ModelLoadError as exc:
        raise StepFailed(str(exc)) from exc
    source = ctx.project.sources[endpoint.batch.input_source]
    frame = data.read_source(ctx, source).to_pandas()
    if len(frame) == 0:
        raise StepFailed(f"source `{source.name}` has no rows to score", 10)
    features = model.features
    if not all(f in frame.columns for f in features):
        spec = ctx.project.models[endpoint.model]
        ts = source.timestamp_field
        missing = [k for k in [*spec.entity_keys, ts] if k not in frame.columns]
        if missing:
            raise StepFailed(f"source `{source.name}` has neither the model's features nor "
                             f"the keys to look them up (missing {', '.join(missing)})", 10)
        frame[ts] = pd.to_datetime(frame[ts], utc=True, unit="s" if pd.api.types
                                   .is_numeric_dtype(frame[ts]) else None)
        entities = frame[[*spec.entity_keys, ts]]
        frame = (data.features_from_feast(ctx, spec, entities) if ctx.feast_repo is not None
                 else data.features_from_files(ctx, spec, entities, ts))
    rows = frame[features].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    predictions = np.concatenate([model.predict(rows[i:i + CHUNK_ROWS])
                                  for i in range(0, len(rows), CHUNK_ROWS)])
    spec = ctx.project.models[endpoint.model]
    keep = [c for c in [*spec.entity_keys, source.timestamp_field] if c in frame.columns]
    out = frame[keep].reset_index(drop=True)
    if predictions.ndim == 2:
        classes = (model.spec or {}).get("classes") or list(range(predictions.shape[1]))
        for j, label in enumerate(classes):
            out[f"prediction_{label}"] = predictions[:, j]
    else:
        out["prediction"] = predictions
    out["model_version"] = model.version
    target = write_output(ctx, endpoint.batch.output, out)
    print(f"scored {len(out)} rows of `{source.name}` with {model.name} version "
          f"{model.version} -> {target}")


def write_output(ctx: StepContext, output: str, frame: pd.DataFrame) -> str:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from pyarrow import fs

    if "://" in output:
        filesystem, path = fs.FileSystem.from_uri(output)
    else:
        local = Path(output) if Path(output).is_absolute() else ctx.data_root / output
        filesystem, path = fs.LocalFileSystem(), str(local.resolve())
    parent = path.rsplit("/", 1)[0]
    filesystem.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.tmp"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if path.endswith(".csv"):
        with filesystem.open_output_stream(tmp) as stream:
            pacsv.write_csv(table, stream)
    else:
        pq.write_table(table, tmp, filesystem=filesystem)
    filesystem.move(tmp, path)
    return output
