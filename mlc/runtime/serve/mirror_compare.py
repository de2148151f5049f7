"""The shadow comparison: each copy's two answers, counted into the shared counts.

Runs in the mirror sender (mirror_sender.py), not in the primary: parsing both answers and
comparing them is the sender's CPU, never the primary's serving loop. Answers are counted
in batches (one vectorised pass per answer shape), and a batch's answer codes, times and
comparison are written in one update of the shared counts, so that a scrape that sees a
copy answered also sees it compared.
"""

from __future__ import annotations

import numpy as np

from . import mirror_counts as mc

try:
    from orjson import loads
except ImportError:  # the image installs orjson; a bare environment still works
    from json import loads

TRANSPORT_ERROR = 0  # the code slot of a copy that got no answer at all


def predictions_of(doc) -> np.ndarray:
    """The predictions in a server's answer, /predict or OIP v2."""
    if isinstance(doc, dict) and "predictions" in doc:
        return np.asarray(doc["predictions"], dtype=np.float64)
    output = doc["outputs"][0]
    return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])


def parsed(answer: bytes | None) -> np.ndarray:
    """The predictions in an answer's body; an answer in no known shape is empty."""
    try:
        return predictions_of(loads(answer))
    except (ValueError, KeyError, IndexError, TypeError):
        return np.full(0, np.nan)


def scores(predictions: np.ndarray) -> np.ndarray:
    """One number per row, as the prediction histogram counts it (mlc.metrics.PREDICTIONS)."""
    return predictions if predictions.ndim <= 1 else predictions.max(axis=1)


def agreement(primary: np.ndarray, shadow: np.ndarray, task: str,
              tolerance: float) -> np.ndarray:
    """Per row: does the shadow agree with the primary?

    Classification: the same class (a probability of the positive class is read at 0.5;
    class probabilities by their largest). Regression: at most `tolerance` apart. Answers
    of another shape (the shadow serves a model with other outputs) agree on nothing.
    """
    if primary.shape != shadow.shape:
        return np.zeros(len(primary), dtype=bool)
    if task == "classification":
        if primary.ndim == 1:
            return (primary >= 0.5) == (shadow >= 0.5)
        return primary.argmax(axis=1) == shadow.argmax(axis=1)
    close = np.abs(primary - shadow) <= tolerance
    return close if close.ndim == 1 else close.all(axis=1)


class Comparison:
    """Finished copies, pending until `flush` counts them (`add` flushes every `every`)."""

    def __init__(self, counts: mc.SharedCounts, task: str, tolerance: float,
                 every: int = 256):
        self.counts = counts
        self.task = task
        self.tolerance = tolerance
        self.every = every
        # (code slot, seconds or None, the primary's answer, the shadow's answer or None)
        self.pending: list[tuple[int, float | None, bytes, bytes | None]] = []

    def add(self, code: int, seconds: float | None, primary: bytes,
            shadow: bytes | None) -> None:
        self.pending.append((code, seconds, primary, shadow))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        codes = np.zeros(mc.CODES)
        seconds = []
        groups: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}
        unmatched: list[np.ndarray] = []  # primary answers whose shadow answer differs
        for code, took, primary, shadow in pending:
            codes[code if 0 <= code < mc.CODES else TRANSPORT_ERROR] += 1
            if took is not None:
                seconds.append(took)
            if code != 200 or shadow is None:
                continue
            ours, theirs = parsed(primary), parsed(shadow)
            if ours.shape != theirs.shape or ours.ndim == 0:
                unmatched.append(np.atleast_1d(scores(ours)))
            else:
                groups.setdefault(ours.shape[1:], []).append((ours, theirs))
        compared = agreed = 0
        primary_scores, shadow_scores = list(unmatched), []
        for pairs in groups.values():
            ours = np.concatenate([p for p, _ in pairs])
            theirs = np.concatenate([s for _, s in pairs])
            same = agreement(ours, theirs, self.task, self.tolerance)
            compared += len(same)
            agreed += int(same.sum())
            primary_scores.append(scores(ours))
            shadow_scores.append(scores(theirs))
        compared += sum(len(u) for u in unmatched)
        ps = np.concatenate(primary_scores) if primary_scores else np.zeros(0)
        ss = np.concatenate(shadow_scores) if shadow_scores else np.zeros(0)
        took = np.asarray(seconds, dtype=np.float64)
        with self.counts.writing() as a:
            a[mc.RESPONSES:mc.RESPONSES + mc.CODES] += codes
            a[mc.DURATION:mc.PRIMARY] += mc.bucket_counts(mc.DURATION_BOUNDS, took)
            a[mc.DURATION_SUM] += float(took.sum())
            a[mc.COMPARED] += compared
            a[mc.AGREED] += agreed
            a[mc.PRIMARY:mc.SHADOW] += mc.bucket_counts(mc.PREDICTION_BOUNDS, ps)
            a[mc.PRIMARY_SUM] += float(np.nansum(ps))
            a[mc.SHADOW:mc.SIZE] += mc.bucket_counts(mc.PREDICTION_BOUNDS, ss)
            a[mc.SHADOW_SUM] += float(np.nansum(ss))
            a[mc.DONE] += len(pending)
