"""The batch_score step: score a source with the endpoint's model, publish the predictions.

The model comes from the registry exactly as the server loads it (loader.py: by alias,
weights only). The input source (any source type: mlc/runtime/sources/) gets the model's
features from its own columns when it has them, else as of each row's time from the feature
views (Feast's offline store, or the sources directly), the same join training used. The
output holds the entity keys, the event time, `prediction` (per class `prediction_<class>`
for multi-class models; with `batch.vectorStore`, the model's output vector under its
`vectorField` instead) and `model_version`; publish.py decides where (the output template
filled with the run's date in the endpoint's time zone, or the `date` parameter for a
backfill) and makes it appear at once (`_SUCCESS` last).

Every run pushes the SCORING_* gauges (mlc/metrics.py): rows read and written, when it ran,
whether it published; a failed run pushes `mlc_batch_scoring_up 0` and leaves the last
success time alone, which the ScoringFailed and ScoresStale alerts watch.

With `batch.vectorStore`, the model must answer a vector of `dimension` values per row: its
first answer (to a row of zeros, before any input is read) is checked, and so is every
chunk's; a wrong length stops the run (exit code 10) before anything is published. The key,
the scalar fields and the vectors are then left in the run folder for the vectors step
(mlc/runtime/vectors.py), which upserts them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlc import metrics as contract
from mlc.runtime import pushgateway
from mlc.runtime.step import StepContext, StepFailed

from . import publish

CHUNK_ROWS = 65_536  # rows per model call: bounded memory for any input size
PUSH_JOB = "mlc-batch-scoring"
OUTPUT_ENV = "MLC_BATCH_OUTPUT"  # replaces the output template (mlc run: a local folder)


def run(ctx: StepContext) -> None:
    endpoint = ctx.project.endpoints.get(ctx.pipeline.endpoint or "")
    if endpoint is None or endpoint.batch is None:
        raise StepFailed(f"pipeline `{ctx.pipeline.name}` has no batch endpoint to score")
    started = time.time()
    textfile = ctx.run_dir / "scoring" / "metrics.prom"

    def export(values, replace: bool) -> None:
        pushgateway.export(values, job=PUSH_JOB, grouping={"endpoint": endpoint.name},
                           textfile=textfile, replace=replace)
    try:
        rows_in, rows_out, target = score(ctx, endpoint)
    except Exception:
        try:
            export([(contract.SCORING_LAST_RUN, started, {}), (contract.SCORING_UP, 0, {})],
                   replace=False)
        except Exception as push_error:  # keep the first error; report the second
            print(f"warning: the failed run could not be reported: {push_error}")
        raise
    export([(contract.SCORING_ROWS, rows_in, {"stage": "input"}),
            (contract.SCORING_ROWS, rows_out, {"stage": "scored"}),
            (contract.SCORING_LAST_RUN, started, {}),
            (contract.SCORING_LAST_SUCCESS, time.time(), {}),
            (contract.SCORING_DURATION, time.time() - started, {}),
            (contract.SCORING_UP, 1, {})], replace=True)
    print(f"published {rows_out} scores of {rows_in} input rows -> {target}")


def score(ctx: StepContext, endpoint) -> tuple[int, int, str]:
    from mlc.runtime import sources
    from mlc.runtime.train import data

    from .loader import ModelLoadError, load

    batch = endpoint.batch
    try:
        moment = publish.run_time(batch.timezone, ctx.param("date"))
    except ValueError as exc:
        raise StepFailed(f"parameter date must be YYYY-MM-DD or an ISO time, got "
                         f"`{ctx.param('date')}`") from exc
    target = publish.fill(os.environ.get(OUTPUT_ENV) or batch.output, moment)
    try:
        model = load(endpoint.model_uri, ctx.mlflow_tracking_uri,
                     allow_pickle=endpoint.allow_pickle or None)
    except ModelLoadError as exc:
        raise StepFailed(str(exc)) from exc
    vectors = ctx.project.vector_writes.get(f"serving.{endpoint.name}")
    if vectors is not None:
        check_vectors(model, vectors, model.predict(np.zeros((1, len(model.features)))))
    source = ctx.project.sources[batch.input_source]
    frame = sources.read(ctx, source).to_pandas()
    rows_in = len(frame)
    if rows_in == 0:
        raise StepFailed(f"source `{source.name}` has no rows to score", 10)
    spec = ctx.project.models[endpoint.model]
    features = model.features
    if not all(f in frame.columns for f in features):
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
    chunks = [model.predict(rows[i:i + CHUNK_ROWS]) for i in range(0, len(rows), CHUNK_ROWS)]
    if vectors is not None:
        for chunk in chunks:
            check_vectors(model, vectors, chunk)
    predictions = np.concatenate(chunks)
    keep = [c for c in [*spec.entity_keys, source.timestamp_field] if c in frame.columns]
    out = frame[keep].reset_index(drop=True)
    if vectors is not None:
        out[vectors.vector_field] = list(predictions.astype(np.float64))
        hand_over(ctx, vectors, frame.reset_index(drop=True), out[vectors.vector_field])
    elif predictions.ndim == 2:
        classes = (model.spec or {}).get("classes") or list(range(predictions.shape[1]))
        for j, label in enumerate(classes):
            out[f"prediction_{label}"] = predictions[:, j]
    else:
        out["prediction"] = predictions
    out["model_version"] = model.version
    publish.publish(target, out, fmt=batch.format, folder=target.endswith("/"),
                    data_root=Path(ctx.data_root), run_id=ctx.run_id,
                    marker={"rows": len(out), "input_rows": rows_in, "model": model.name,
                            "model_version": str(model.version),
                            "as_of": moment.isoformat(), "run": ctx.run_id})
    return rows_in, len(out), target


def check_vectors(model, write, answer: np.ndarray) -> None:
    """The model's answer is one vector of `dimension` finite values per row."""
    what = f"model {model.name} version {model.version}"
    width = answer.shape[1] if answer.ndim == 2 else 1
    if width == 1:
        raise StepFailed(f"{what} answers one number per row, but `vectorStore` of endpoint "
                         f"`{write.endpoint}` needs a vector of {write.dimension} values: serve "
                         "a model that returns an embedding per row", 10)
    if width != write.dimension:
        raise StepFailed(f"{what} answers vectors of {width} values, but `vectorStore."
                         f"dimension` of endpoint `{write.endpoint}` is {write.dimension}", 10)
    if not np.all(np.isfinite(answer)):
        raise StepFailed(f"{what} answered a vector holding a value that is not a finite "
                         "number", 10)


def hand_over(ctx: StepContext, write, frame: pd.DataFrame, vectors: pd.Series) -> None:
    """The vectors step's input: the key, the scalar fields, the input's time and the
    vector of each scored row, in the run folder (replaced whole: a rerun leaves no mix)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlc.runtime.vectors import scored_rows_path

    wanted = [write.primary_key, *(f.name for f in write.scalar_fields)]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise StepFailed(f"the scored rows of endpoint `{write.endpoint}` have no column "
                         f"{', '.join(missing)} for `vectorStore`", 10)
    table = pa.Table.from_pandas(frame[wanted], preserve_index=False)
    if write.timestamp_field:  # the newest row of a key wins; none: the last one scored
        table = table.append_column(write.timestamp_field, pa.array(
            frame[write.timestamp_field] if write.timestamp_field in frame.columns
            else [None] * len(frame)))
    table = table.append_column(write.vector_field, pa.array(
        [v.tolist() for v in vectors], pa.list_(pa.float32())))
    path = scored_rows_path(ctx, write)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial)
    partial.replace(path)
