"""The shadow comparison's counts, in memory that the primary and its mirror sender share.

The sender (mirror_sender.py) counts the shadow's answers and the comparison; the primary
exports them on its own /metrics (shadow.ShadowStats), under the names and labels the gates,
recording rules, dashboards and alerts read. So the counts live in one anonymous memory
file (memfd) that the primary creates and hands to each sender it starts: a sender that
dies and is restarted continues from the counts the last one left, and a counter never goes
back.

One writer at a time (the running sender; the primary only while none runs), one reader
(the primary's scrape). The writer brackets each update with a sequence number (odd while
it writes) and the reader retries a copy taken while the number moved, so that a scrape
never sees the answers of a batch counted without its comparison.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator

import numpy as np

from mlc import metrics as contract

# Scalars first, then the arrays; indices into one float64 array.
SEQUENCE, RECEIVED, DONE, DROPPED_QUEUE_FULL, DROPPED_SHUTDOWN = 0, 1, 2, 3, 4
COMPARED, AGREED, DURATION_SUM, PRIMARY_SUM, SHADOW_SUM = 5, 6, 7, 8, 9
# The pid of the sender once it drains on SIGTERM (before that, SIGTERM would kill it and
# lose what it holds uncounted: the primary waits for this before it signals).
READY = 10
RESPONSES = 11  # then one slot per HTTP status code 0..599; slot 0 is "no answer at all"
CODES = 600
DURATION_BOUNDS = np.asarray(contract.SHADOW_DURATION.buckets, dtype=np.float64)
PREDICTION_BOUNDS = np.asarray(contract.SHADOW_PREDICTIONS.buckets, dtype=np.float64)
DURATION = RESPONSES + CODES  # non-cumulative bucket counts, the last one +Inf
PRIMARY = DURATION + len(DURATION_BOUNDS) + 1
SHADOW = PRIMARY + len(PREDICTION_BOUNDS) + 1
SIZE = SHADOW + len(PREDICTION_BOUNDS) + 1
# A scrape that keeps finding the sender mid-write takes the copy anyway after this many
# tries (a sender killed mid-write leaves the number odd until the primary resets it).
READ_TRIES = 1000


def bucket_counts(bounds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Non-cumulative `le` bucket counts of `values` (NaN left out), +Inf last."""
    values = values[~np.isnan(values)]
    at_most = np.searchsorted(np.sort(values), bounds, side="right")
    return np.diff(at_most, prepend=0, append=values.size).astype(np.float64)


class SharedCounts:
    """The counts array over a memfd; `fd=None` creates one (the primary), else maps it."""

    def __init__(self, fd: int | None = None):
        nbytes = SIZE * 8
        if fd is None:
            fd = os.memfd_create("mlc-shadow-counts", 0)
            os.ftruncate(fd, nbytes)
        self.fd = fd
        self._map = mmap.mmap(fd, nbytes)
        self.array = np.frombuffer(self._map, dtype=np.float64, count=SIZE)

    @contextlib.contextmanager
    def writing(self) -> Iterator[np.ndarray]:
        a = self.array
        a[SEQUENCE] += 1
        try:
            yield a
        finally:
            a[SEQUENCE] += 1

    def snapshot(self) -> np.ndarray:
        a = self.array
        copy = a.copy()
        for _ in range(READ_TRIES):
            before = a[SEQUENCE]
            if before % 2 == 0:
                copy = a.copy()
                if copy[SEQUENCE] == before:
                    break
        return copy

    def writer_gone(self) -> int:
        """After a sender died: the copies it had taken and not finished (lost with it),
        now counted as done; and the sequence even again, whatever it was doing."""
        a = self.array
        lost = int(a[RECEIVED] - a[DONE])
        a[DONE] = a[RECEIVED]
        if a[SEQUENCE] % 2:
            a[SEQUENCE] += 1
        return lost
