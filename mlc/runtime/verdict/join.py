"""Logged predictions joined with the labels that have arrived for them.

The serving runtime logs a sample of its predictions (mlc/runtime/prediction_log.py) with
the request id, the variant that answered and every input; labels arrive later, in a source,
keyed by the same request id (or by an input such as a customer id). This join is the one
every consumer of "predictions with their outcome" goes through: the A/B verdict today, a
model-quality monitor tomorrow.

Keys are matched exactly, as strings (an id read back from CSV as an integer still matches
the logged text). A key logged more than once is ambiguous (one request of several rows, or
two requests that sent one id) and is left out, as are rows without a label; a key labelled
more than once keeps its latest label (by the source's timestamp when it has one). The
counts of what was left out come back with the rows, so that a reader sees how much of the
log the figures rest on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from mlc.runtime.prediction_log import PREDICTION_COLUMN, VARIANT_COLUMN, VERSION_COLUMN

LABEL_COLUMN = "__label__"  # the joined frame's label, whatever the source calls it


class JoinError(Exception):
    """The log or the labels lack a column the join needs."""


@dataclass(frozen=True)
class JoinCounts:
    predictions: int  # logged rows in the window (with a variant, when `variants` is set)
    labels: int  # label rows read
    joined: int  # predictions with exactly one label
    unlabelled: int  # predictions no label has arrived for (yet)
    ambiguous: int  # predictions whose key was logged more than once

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def labelled_predictions(log: pd.DataFrame, labels: pd.DataFrame, *, key: str,
                         label_column: str, timestamp: str | None = None,
                         variants: bool = False) -> tuple[pd.DataFrame, JoinCounts]:
    """The log's rows that have a label: its columns plus LABEL_COLUMN.

    `variants`: keep only rows an A/B variant answered (the variant column is set).
    `timestamp`: the labels' time column, which decides between two labels of one key.
    """
    for column in (key, PREDICTION_COLUMN):
        if column not in log.columns:
            raise JoinError(f"the prediction log has no column `{column}`")
    if variants and VARIANT_COLUMN not in log.columns:
        raise JoinError("the prediction log has no `variant` column: it was written by a "
                        "server that is not an A/B variant")
    for column in (key, label_column):
        if column not in labels.columns:
            raise JoinError(f"the labels have no column `{column}` (they have: "
                            f"{', '.join(map(str, labels.columns))})")
    if variants:
        log = log[log[VARIANT_COLUMN].notna()]
    log = log[log[key].notna()].copy()
    log["__key__"] = _key_text(log[key])
    repeated = log["__key__"].duplicated(keep=False)
    ambiguous = int(repeated.sum())
    log = log[~repeated]
    found = labels[labels[key].notna() & labels[label_column].notna()].copy()
    found["__key__"] = _key_text(found[key])
    if timestamp and timestamp in found.columns:
        found = found.sort_values(timestamp, kind="stable")
    found = found.drop_duplicates("__key__", keep="last")
    found = found[["__key__", label_column]].rename(columns={label_column: LABEL_COLUMN})
    if LABEL_COLUMN in log.columns:
        log = log.drop(columns=[LABEL_COLUMN])
    joined = log.merge(found, on="__key__", how="inner", validate="one_to_one")
    joined = joined.drop(columns=["__key__"]).reset_index(drop=True)
    counts = JoinCounts(predictions=len(log) + ambiguous, labels=len(labels),
                        joined=len(joined), unlabelled=len(log) - len(joined),
                        ambiguous=ambiguous)
    return joined, counts


def _key_text(column: pd.Series) -> pd.Series:
    """Keys as text; whole floats (an id column read with NaNs) lose their `.0`."""
    if pd.api.types.is_float_dtype(column):
        return column.map(lambda v: str(int(v)) if float(v).is_integer() else repr(float(v)))
    return column.astype(str)


__all__ = ["LABEL_COLUMN", "VERSION_COLUMN", "JoinCounts", "JoinError", "labelled_predictions"]
