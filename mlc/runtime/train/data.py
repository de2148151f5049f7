"""Training data: the label rows, their features as of each row's time, and the snapshot.

    label source rows in the window (entity keys, event time, label)   = the entity frame
      + features as of each row's event time, within each view's ttl   = point in time
      -> dataset.parquet in the run folder, its sha256 = the data snapshot

Features come from Feast's historical retrieval of the model's feature service when a Feast
repo is given (the cluster, and `mlc run`), otherwise from the sources directly (sources/:
files, or a query of the warehouse) with the same point-in-time rule: the newest feature row
at or before the event, at most ttl older.
The window counts back from the newest labelled row, not from the clock, so a run on the
same data trains on the same rows whenever it happens (staleness is the validation step's
job). A retried step finds the snapshot of its first attempt and trains on exactly that.
"""

from __future__ import annotations

import ast
import hashlib
import json
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlc.compiler import ir
from mlc.runtime import feast_connection, sources, step_summary
from mlc.runtime.step import EXIT_BAD_DATA, StepContext, StepFailed

DATA_DIR = "data"
DATASET_FILE = "dataset.parquet"
INFO_FILE = "data.json"
SPLIT_COLUMN = "__split__"
_ROW = "__row__"


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame  # keys, event time, label, features, __split__ ("train" | "test")
    features: list[str]  # input columns, in the model's order
    feature_refs: list[str]  # "view:field", same order
    label: str
    timestamp: str
    info: dict[str, Any]  # snapshot, rows, window, retrieval: recorded for lineage

    @property
    def snapshot(self) -> str:
        return self.info["snapshot"]

    def part(self, split: str) -> pd.DataFrame:
        return self.frame[self.frame[SPLIT_COLUMN] == split]


def _as_utc(series: pd.Series) -> pd.Series:
    if not pd.api.types.is_datetime64_any_dtype(series):
        raise StepFailed(f"column `{series.name}` must hold timestamps, found {series.dtype}")
    if getattr(series.dt, "tz", None) is None:
        return series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC")


# ---------------------------------------------------------------------------------------
# The entity frame and its features


def window_seconds(ctx: StepContext) -> int:
    raw = ctx.param("data_window_seconds", "0") or "0"
    try:
        value = int(raw)
    except ValueError as exc:
        raise StepFailed(f"parameter data_window_seconds must be a whole number of seconds, "
                         f"got `{raw}`") from exc
    return max(value, 0)


def label_frame(ctx: StepContext, model: ir.Model) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The label source's rows in the training window, in a stable order."""
    source = ctx.project.sources[model.label_source]
    ts = source.timestamp_field
    columns = [*model.entity_keys, *query_column(model), ts, model.label_column]
    frame = sources.read(ctx, source, columns).to_pandas()
    frame[ts] = _as_utc(frame[ts])
    frame = frame.dropna(subset=[ts, model.label_column, *model.entity_keys,
                                 *query_column(model)])
    window = window_seconds(ctx)
    newest = frame[ts].max()
    start = None
    if window and len(frame):
        start = newest - pd.Timedelta(seconds=window)
        frame = frame[frame[ts] >= start]
    # a stable order: time, then keys; rows equal in both keep the source's order
    frame = frame.sort_values([ts, *model.entity_keys], kind="mergesort").reset_index(drop=True)
    info = {"window_seconds": window, "window_start": _iso(start), "window_end": _iso(newest),
            "label_source": source.name, "label_location": sources.location(ctx, source)}
    return frame, info


def query_column(model: ir.Model) -> list[str]:
    """A ranking model's query column where it is not an entity key (the label source's):
    the dataset keeps it beside the keys."""
    r = model.ranking
    return [r.group] if r is not None and r.group not in model.entity_keys else []


def test_rows(frame: pd.DataFrame, ts: str, n_test: int, group: str | None) -> np.ndarray:
    """Which rows (of a frame in time order) are the test set: the newest `n_test` rows, or
    for a ranking model the newest whole queries (a query's time is its newest row's) until
    they hold at least `n_test` rows, so that no query is split between train and test."""
    if group is None or n_test == 0:
        return np.arange(len(frame)) >= len(frame) - n_test
    newest = frame.groupby(group, sort=True)[ts].max()
    sizes = frame.groupby(group, sort=True).size()
    order = pd.DataFrame({"t": newest, "n": sizes}).reset_index().sort_values(
        ["t", group], ascending=False, kind="mergesort")
    before = order["n"].cumsum().to_numpy() - order["n"].to_numpy()
    chosen = set(order[group].to_numpy()[before < n_test].tolist())
    return frame[group].isin(chosen).to_numpy()


def features_from_feast(ctx: StepContext, model: ir.Model, entities: pd.DataFrame
                        ) -> pd.DataFrame:
    """Feast historical retrieval of the model's feature service (point in time correct)."""
    from feast import FeatureStore

    assert ctx.feast_repo is not None
    feast_connection.prepare(ctx.feast_repo)
    store = FeatureStore(repo_path=str(ctx.feast_repo))
    try:
        service = store.get_feature_service(model.feature_service)
    except Exception as exc:  # feast raises its own not-found types per registry kind
        raise StepFailed(f"feature service `{model.feature_service}` is not in the Feast "
                         f"registry of {ctx.feast_repo}: {exc} (was `feast apply` run?)") from exc
    job = store.get_historical_features(entity_df=entities, features=service)
    return job.to_df()


def features_from_files(ctx: StepContext, model: ir.Model, entities: pd.DataFrame,
                        ts: str) -> pd.DataFrame:
    """The same join as Feast's, from the file sources: newest row <= event, within ttl."""
    out = entities.sort_values(ts, kind="mergesort")
    wanted: dict[str, list[ir.FeatureRef]] = {}
    for ref in model.features:
        wanted.setdefault(ref.view, []).append(ref)
    for view_name in sorted(wanted):
        view = ctx.project.feature_views[view_name]
        source = ctx.project.sources[view.source]
        fields = [f.name for f in view.fields]
        table = sources.read(ctx, source, [*view.join_keys, source.timestamp_field, *fields])
        rows = table.to_pandas().rename(columns={source.timestamp_field: "__feature_ts__"})
        rows["__feature_ts__"] = _as_utc(rows["__feature_ts__"])
        rows = rows.sort_values("__feature_ts__", kind="mergesort")
        # merge_asof needs both time columns at the same resolution
        rows["__feature_ts__"] = rows["__feature_ts__"].astype(out[ts].dtype)
        out = pd.merge_asof(out, rows, left_on=ts, right_on="__feature_ts__",
                            by=view.join_keys, direction="backward", allow_exact_matches=True,
                            tolerance=pd.Timedelta(seconds=view.ttl_seconds) if view.ttl_seconds
                            else None)
        out = out.drop(columns="__feature_ts__")
        for derived in view.derived:
            out[derived.name] = evaluate_expression(derived.expression, out)
        keep = {ref.field for ref in wanted[view_name]}
        out = out.drop(columns=[f for f in [*fields, *(d.name for d in view.derived)]
                                if f not in keep])
    return out


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}


def evaluate_expression(expression: str, frame: pd.DataFrame) -> pd.Series:
    """A derived feature: names of columns, numbers, + - * / and parentheses (as resolve
    checked them), evaluated over float64 columns."""

    def ev(node: ast.AST):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Name) and node.id in frame.columns:
            return frame[node.id].astype("float64")
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        raise StepFailed(f"derived feature expression `{expression}` is not supported")

    result = ev(ast.parse(expression, mode="eval"))
    if not isinstance(result, pd.Series):
        result = pd.Series(float(result), index=frame.index)
    return result.astype("float64")


# ---------------------------------------------------------------------------------------
# The dataset and its snapshot


def snapshot_hash(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        digest.update(f"{name}:{dtype}\0".encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def build_dataset(ctx: StepContext, model: ir.Model, *, test_split: float | None = None
                  ) -> Dataset:
    """Join, order, split and record the training data; reuse the run's snapshot if any."""
    folder = ctx.run_dir / DATA_DIR
    source = ctx.project.sources[model.label_source]
    ts, label = source.timestamp_field, model.label_column
    features = [ref.field for ref in model.features]
    refs = [ref.qualified for ref in model.features]
    if (folder / DATASET_FILE).is_file() and (folder / INFO_FILE).is_file():
        info = json.loads((folder / INFO_FILE).read_text("utf-8"))
        frame = pd.read_parquet(folder / DATASET_FILE)
        if snapshot_hash(frame) == info.get("snapshot"):
            return Dataset(frame, features, refs, label, ts, info)

    entities, info = label_frame(ctx, model)
    if len(entities) == 0:
        raise StepFailed(f"no rows of source `{model.label_source}` in the training window")
    entities[_ROW] = np.arange(len(entities), dtype=np.int64)
    if ctx.feast_repo is not None:
        joined, retrieval = features_from_feast(ctx, model, entities), "feast"
    else:
        joined, retrieval = features_from_files(ctx, model, entities, ts), "files"
    missing = [f for f in features if f not in joined.columns]
    if missing:
        raise StepFailed(f"the feature data has no column {', '.join(missing)} "
                         f"(feature service `{model.feature_service}`)")
    joined = joined.sort_values(_ROW, kind="mergesort").reset_index(drop=True)
    joined[ts] = _as_utc(joined[ts]).astype("datetime64[us, UTC]")
    frame = joined[[*model.entity_keys, *query_column(model), ts, label, *features]].copy()
    for name in features:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    dropped = count_rows_without_features(model, frame, len(entities))
    print(describe_dropped(dropped))
    limit = model.training.max_dropped_rows
    split = model.test_split if test_split is None else test_split
    group = model.ranking.group if model.ranking is not None else None
    is_test = test_rows(frame, ts, int(round(len(frame) * split)), group)
    n_test = int(is_test.sum())
    step_summary.write(ctx, [{"kind": "dataset", "label_rows": dropped["label_rows"],
                              "dropped": dropped["dropped_rows"],
                              "without_features": dropped["rows_without_features"],
                              "train_rows": len(frame) - n_test, "test_rows": n_test,
                              "max_dropped_share": limit}])
    if limit is not None and dropped["dropped_share"] > limit:
        raise StepFailed(f"{describe_dropped(dropped)}: above `training.maxDroppedRows` "
                         f"({limit:g}); nothing was trained", EXIT_BAD_DATA)
    # the newest rows are the test set: a model is judged on data later than it learned from
    # (a ranking model's newest whole queries)
    frame[SPLIT_COLUMN] = np.where(is_test, "test", "train")
    info.update({
        "snapshot": snapshot_hash(frame), "rows": len(frame),
        "train_rows": len(frame) - n_test, "test_rows": n_test, "retrieval": retrieval,
        "feature_service": model.feature_service, "features": features,
        "feature_refs": refs, "label": label, "timestamp": ts, **dropped,
    })
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{DATASET_FILE}.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.replace(folder / DATASET_FILE)
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", "utf-8")
    return Dataset(frame, features, refs, label, ts, info)


def count_rows_without_features(model: ir.Model, frame: pd.DataFrame, label_rows: int
                                ) -> dict[str, Any]:
    """How many labelled rows the feature join lost, and how many came back without features.

    Lost rows did not come back from the join at all (Feast's retrieval can drop entity
    rows). Rows without features came back with every feature missing (no view had a row
    for their keys within the ttl): they stay in the data, filled as serving fills them, but
    they teach the model nothing, so `training.maxDroppedRows` counts them with the lost.
    Rows missing only some views' features are counted per view.
    """
    features = [ref.field for ref in model.features]
    empty = int(frame[features].isna().all(axis=1).sum()) if features else 0
    views = sorted({ref.view for ref in model.features})
    per_view = {view: int(frame[[r.field for r in model.features if r.view == view]]
                          .isna().all(axis=1).sum()) for view in views}
    lost = label_rows - len(frame)
    return {"label_rows": label_rows, "dropped_rows": lost, "rows_without_features": empty,
            "dropped_share": round((lost + empty) / label_rows, 6) if label_rows else 0.0,
            "rows_missing_view": per_view}


def describe_dropped(d: dict[str, Any]) -> str:
    text = (f"training data: {d['label_rows']} labelled rows, {d['dropped_rows']} dropped by "
            f"the feature join, {d['rows_without_features']} without any feature value "
            f"({d['dropped_share']:.1%} unusable)")
    partial = {v: n for v, n in d["rows_missing_view"].items() if n}
    if partial:
        text += "; rows without " + ", ".join(
            f"`{v}` features: {n}" for v, n in partial.items()) + " (filled)"
    return text


def load_dataset(ctx: StepContext) -> Dataset:
    """The snapshot written by the train step (evaluation reads the test rows from it)."""
    folder = ctx.run_dir / DATA_DIR
    if not (folder / INFO_FILE).is_file():
        raise StepFailed(f"no training data snapshot in {folder}: run the train step first")
    info = json.loads((folder / INFO_FILE).read_text("utf-8"))
    frame = pd.read_parquet(folder / DATASET_FILE)
    return Dataset(frame, info["features"], info["feature_refs"], info["label"],
                   info["timestamp"], info)


def _iso(value) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).isoformat()
