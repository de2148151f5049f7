"""Logged predictions joined with the labels that have arrived for them.

The serving runtime logs a sample of its predictions (mlc/runtime/prediction_log.py) with
the request id, the variant that answered, every input and the request's entity keys; labels
arrive later, in a source. This join is the one every consumer of "predictions with their
outcome" goes through: the A/B verdict today, a model-quality monitor tomorrow.

Two ways to join, matching keys as strings either way (an id read back from CSV as an integer
still matches the logged text):

- exactly, on a key the label carries for its very request (`request_id`, or an input): a key
  logged more than once is ambiguous (one request of several rows, or two requests that sent
  one id) and is left out; a key labelled more than once keeps its latest label (by the
  source's timestamp when it has one).
- as of the label's time, on an entity key (a customer id): a label joins the latest
  prediction for its entity made at or before the label's time and at most `within` seconds
  earlier (pandas' merge_asof, backward, with that tolerance). Labels may arrive late and in
  any order: only their own time counts. A prediction several labels reach keeps the latest
  of them; two predictions for one entity at one instant are ambiguous and left out.

Rows without a label are left out too. The counts of what was left out come back with the
rows, so that a reader sees how much of the log the figures rest on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from mlc.runtime.prediction_log import (
    PREDICTION_COLUMN,
    TIMESTAMP_COLUMN,
    VARIANT_COLUMN,
    VERSION_COLUMN,
)

LABEL_COLUMN = "__label__"  # the joined frame's label, whatever the source calls it


class JoinError(Exception):
    """The log or the labels lack a column the join needs."""


@dataclass(frozen=True)
class JoinCounts:
    predictions: int  # logged rows in the window (with a variant, when `variants` is set)
    labels: int  # label rows read
    joined: int  # predictions with exactly one label
    unlabelled: int  # predictions no label has arrived for (yet)
    ambiguous: int  # predictions whose key (as of: key and time) was logged more than once
    unmatched_labels: int = 0  # labels (one per key, as of: every label) that reached none

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def labelled_predictions(log: pd.DataFrame, labels: pd.DataFrame, *, key: str,
                         label_column: str, timestamp: str | None = None,
                         variants: bool = False, within_seconds: int | None = None
                         ) -> tuple[pd.DataFrame, JoinCounts]:
    """The log's rows that have a label: its columns plus LABEL_COLUMN.

    `variants`: keep only rows an A/B variant answered (the variant column is set).
    `timestamp`: the labels' time column, which decides between two labels of one key.
    `within_seconds`: join as of the label's time (`timestamp`, then required), a label
    reaching back this far at most; None: join on the key exactly.
    """
    required = (key, PREDICTION_COLUMN) if within_seconds is None else (
        key, PREDICTION_COLUMN, TIMESTAMP_COLUMN)
    for column in required:
        if column not in log.columns:
            raise JoinError(f"the prediction log has no column `{column}`")
    if variants and VARIANT_COLUMN not in log.columns:
        raise JoinError("the prediction log has no `variant` column: it was written by a "
                        "server that is not an A/B variant")
    needed = (key, label_column) if within_seconds is None else (key, label_column, timestamp)
    for column in needed:
        if column is None or column not in labels.columns:
            raise JoinError(f"the labels have no column `{column}` (they have: "
                            f"{', '.join(map(str, labels.columns))})")
    if variants:
        log = log[log[VARIANT_COLUMN].notna()]
    log = log[log[key].notna()].copy()
    log["__key__"] = _key_text(log[key])
    if LABEL_COLUMN in log.columns:
        log = log.drop(columns=[LABEL_COLUMN])
    found = labels[labels[key].notna() & labels[label_column].notna()].copy()
    found["__key__"] = _key_text(found[key])
    if within_seconds is None:
        joined, ambiguous, unmatched = _exactly(log, found, label_column, timestamp)
    else:
        assert timestamp is not None
        joined, ambiguous, unmatched = _as_of(log, found, label_column, timestamp,
                                              within_seconds)
    joined = joined.drop(columns=["__key__"]).reset_index(drop=True)
    counts = JoinCounts(predictions=len(log), labels=len(labels), joined=len(joined),
                        unlabelled=len(log) - ambiguous - len(joined), ambiguous=ambiguous,
                        unmatched_labels=unmatched)
    return joined, counts


def _exactly(log: pd.DataFrame, found: pd.DataFrame, label_column: str,
             timestamp: str | None) -> tuple[pd.DataFrame, int, int]:
    repeated = log["__key__"].duplicated(keep=False)
    log = log[~repeated]
    if timestamp and timestamp in found.columns:
        found = found.sort_values(timestamp, kind="stable")
    found = found.drop_duplicates("__key__", keep="last")
    found = found[["__key__", label_column]].rename(columns={label_column: LABEL_COLUMN})
    joined = log.merge(found, on="__key__", how="inner", validate="one_to_one")
    return joined, int(repeated.sum()), len(found) - len(joined)


def _as_of(log: pd.DataFrame, found: pd.DataFrame, label_column: str, timestamp: str,
           within_seconds: int) -> tuple[pd.DataFrame, int, int]:
    log = log.assign(__at__=_utc(log[TIMESTAMP_COLUMN]))
    repeated = log.duplicated(["__key__", "__at__"], keep=False)
    log = log[~repeated].assign(__row__=lambda f: range(len(f)))
    found = found[found[timestamp].notna()]
    found = found.assign(__at__=_utc(found[timestamp]))
    found = found[["__key__", "__at__", label_column]].rename(
        columns={label_column: LABEL_COLUMN}).sort_values("__at__", kind="stable")
    predictions = log[["__key__", "__at__", "__row__"]].rename(
        columns={"__at__": "__logged_at__"}).sort_values("__logged_at__", kind="stable")
    matched = pd.merge_asof(found, predictions, left_on="__at__", right_on="__logged_at__",
                            by="__key__", direction="backward",
                            tolerance=pd.Timedelta(seconds=within_seconds))
    unmatched = int(matched["__row__"].isna().sum())
    # the latest label of a prediction (stable sort by time above: the last one wins)
    matched = matched.dropna(subset=["__row__"]).drop_duplicates("__row__", keep="last")
    matched = matched.astype({"__row__": "int64"})[["__row__", LABEL_COLUMN]]
    joined = log.merge(matched, on="__row__", how="inner", validate="one_to_one")
    return joined.drop(columns=["__row__", "__at__"]), int(repeated.sum()), unmatched


def _utc(column: pd.Series) -> pd.Series:
    """Times as UTC instants: numbers are unix seconds, naive times are UTC."""
    if pd.api.types.is_numeric_dtype(column):
        out = pd.to_datetime(column, unit="s", utc=True)
    else:
        out = pd.to_datetime(column, utc=True)
    return out.astype("datetime64[ns, UTC]")


def _key_text(column: pd.Series) -> pd.Series:
    """Keys as text; whole floats (an id column read with NaNs) lose their `.0`."""
    if pd.api.types.is_float_dtype(column):
        return column.map(lambda v: str(int(v)) if float(v).is_integer() else repr(float(v)))
    return column.astype(str)


__all__ = ["LABEL_COLUMN", "VERSION_COLUMN", "JoinCounts", "JoinError", "labelled_predictions"]
