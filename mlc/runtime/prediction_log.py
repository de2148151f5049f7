"""The prediction log: sampled predictions the server writes and the drift check reads.

Layout, under an endpoint's `prediction_log_uri` (a local folder or any URI pyarrow's
filesystems open: s3://, gs://, abfs://):

    date=YYYY-MM-DD/part-<unix ms>-<host>-<pid>-<writer>-<seq>.parquet

one Parquet file per flush, each row one sampled prediction with the columns

    timestamp        timestamp[us, UTC]  when the prediction was made
    model_version    string              the registry version that made it
    <feature> ...    float64             each model input, as received (NaN: missing)
    __prediction__   float64             P(positive class), the class index (multi-class),
                                         or the predicted value (regression)
    request_id       string              the request's id (its `x-request-id`), which a
                                         primary and its shadow log alike: the join key
    variant          string              the A/B variant that answered (null: none)
    <entity key> ... int64 or string     each entity key of the model's feature views, as
                                         the request sent it (null: not sent, of the wrong
                                         type, or a string over MAX_KEY_CHARS): what
                                         labels keyed by a customer id join on

Files are written whole and never appended to, so a reader sees complete files only; the
date folders let a reader skip days outside its window without opening them. Many servers
write to one log: file names carry the host, process and writer.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import random
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PREDICTION_COLUMN = "__prediction__"  # == mlc.metrics.PREDICTION_FEATURE
TIMESTAMP_COLUMN = "timestamp"
VERSION_COLUMN = "model_version"
REQUEST_ID_COLUMN = "request_id"
VARIANT_COLUMN = "variant"
ENV_OVERRIDE = "MLC_PREDICTION_LOG_URI"  # replaces the IR's URI (local runs, tests)
# An entity key is an id, not a payload: a longer string is not logged (null), so that a
# client cannot grow the log by sending megabytes in a key.
MAX_KEY_CHARS = 256
KEY_TYPES = ("int64", "string")  # what an entity key is logged as (others: as string)


def resolve_uri(uri: str) -> str:
    """The log location to use: the override from the environment, else `uri`."""
    return os.environ.get(ENV_OVERRIDE) or uri


def _filesystem(uri: str):
    """(pyarrow filesystem, path inside it); relative local paths become absolute."""
    from pyarrow import fs

    if "://" not in uri:
        return fs.LocalFileSystem(), str(Path(uri).resolve())
    return fs.FileSystem.from_uri(uri)


# other runtimes that write beside the log (the A/B verdict) open URIs the same way
filesystem = _filesystem


_WRITERS = itertools.count(1)


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")


class PredictionLogWriter:
    """Samples rows and writes them in the background, so serving never waits on storage.

    `log` is cheap (a random draw and a copy of the sampled rows); a daemon thread writes a
    file when `flush_rows` rows are buffered or the oldest is `flush_seconds` old, and
    `close` writes what is left (the server calls it after draining).
    """

    def __init__(self, uri: str, features: Sequence[str], sample_rate: float, *,
                 flush_rows: int = 10_000, flush_seconds: float = 30.0,
                 seed: int | None = None, variant: str | None = None,
                 entity_keys: Mapping[str, str] | None = None):
        self.uri = uri
        self.variant = variant
        self.features = list(features)
        # join key -> its entity's value type; a key that is also a model input is in the
        # feature columns already
        self.entity_keys = {k: t if t in KEY_TYPES else "string"
                            for k, t in sorted((entity_keys or {}).items())
                            if k not in self.features}
        self.sample_rate = float(sample_rate)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._random = random.Random(seed)
        self._log_miss = math.log1p(-self.sample_rate) if 0 < self.sample_rate < 1 else 0.0
        self._skip = self._gap() - 1 if self.sample_rate > 0 else 0  # rows before the next kept
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # (timestamps, rows, predictions, model version, request id, entity key columns)
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, str, str | None,
                                 dict[str, list]]] = []
        self._rows = 0
        self._oldest: float | None = None
        self._seq = 0
        self._closed = False
        # host, process and writer: two writers of one process (an A/B variant's and a
        # test's) flushing rows of one millisecond would otherwise write one file name
        self._tag = f"{socket.gethostname()}-{os.getpid()}-{next(_WRITERS)}"
        self.errors = 0  # failed writes (the rows are dropped: logging never blocks serving)
        self._warm_up()

        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def _warm_up(self) -> None:
        """Import and exercise pyarrow's writer now (half a second), not in the first flush,
        while the server is answering requests."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        _filesystem(self.uri)
        chunk = (np.zeros(1), np.zeros((1, len(self.features))), np.zeros(1), "0", None, {})
        pq.write_table(self._table([chunk]), pa.BufferOutputStream())

    def log(self, rows: np.ndarray, predictions: np.ndarray, model_version: str,
            now: float | None = None, request_id: str | None = None,
            request: Any = None) -> int:
        """Sample rows of one model call (or of one request); returns how many were kept.

        `request`: the request's JSON body, where the rows' entity keys are read from (an
        `instances` list, one object, a list of objects or `inputs` columns); None when the
        body cannot carry them (an Open Inference Protocol request).

        Sampling skips a geometric number of rows between kept ones (the same law as a coin
        per row): a call with nothing to keep costs a subtraction, not a random draw per row.
        """
        n = len(rows)
        if self.sample_rate <= 0 or n == 0:
            return 0
        if self._skip >= n:
            self._skip -= n
            return 0
        picked = []
        position = self._skip
        while position < n:
            picked.append(position)
            position += self._gap()
        self._skip = position - n
        now = time.time() if now is None else now
        chunk = (np.full(len(picked), now), np.array(rows[picked], dtype=np.float64),
                 _prediction_column(np.asarray(predictions)[picked]), str(model_version),
                 request_id, self._keys(request, n, picked))
        with self._lock:
            self._chunks.append(chunk)
            self._rows += len(picked)
            self._oldest = self._oldest or now
            if self._rows >= self.flush_rows:
                self._wake.notify()
        return len(picked)

    def _keys(self, request: Any, n: int, picked: list[int]) -> dict[str, list]:
        """The picked rows' entity keys, typed and bounded; None where one is not usable."""
        if not self.entity_keys:
            return {}
        columns = _request_columns(request, n, self.entity_keys)
        return {key: [_key_value(columns[key][i], kind) if key in columns else None
                      for i in picked]
                for key, kind in self.entity_keys.items()}

    def _gap(self) -> int:
        """Rows from one kept row to the next: geometric with success `sample_rate`."""
        if self.sample_rate >= 1:
            return 1
        return 1 + int(math.log(1.0 - self._random.random()) / self._log_miss)

    def flush(self) -> None:
        with self._lock:
            chunks, self._chunks, self._rows, self._oldest = self._chunks, [], 0, None
        if chunks:
            self._write(chunks)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and self._rows < self.flush_rows and (
                        self._oldest is None
                        or time.time() - self._oldest < self.flush_seconds):
                    self._wake.wait(timeout=max(0.05, min(1.0, self.flush_seconds)))
                if self._closed:
                    return
            try:
                self.flush()
            except Exception:  # storage down: count it, keep serving
                self.errors += 1

    def _table(self, chunks):
        import pyarrow as pa

        ts = np.concatenate([c[0] for c in chunks])
        rows = np.concatenate([c[1] for c in chunks])
        preds = np.concatenate([c[2] for c in chunks])
        names = sorted({c[3] for c in chunks})  # one or two versions: index, don't repeat
        index = np.repeat([names.index(c[3]) for c in chunks], [len(c[0]) for c in chunks])
        columns = {
            TIMESTAMP_COLUMN: pa.array((ts * 1e6).astype("int64"), pa.timestamp("us", "UTC")),
            VERSION_COLUMN: pa.array(names, pa.string()).take(pa.array(index, pa.int32())),
        }
        for i, name in enumerate(self.features):
            columns[name] = pa.array(rows[:, i], pa.float64())
        columns[PREDICTION_COLUMN] = pa.array(preds, pa.float64())
        columns[REQUEST_ID_COLUMN] = pa.array(
            [c[4] for c in chunks for _ in range(len(c[0]))], pa.string())
        columns[VARIANT_COLUMN] = (pa.nulls(len(ts), pa.string()) if self.variant is None
                                   else pa.array([self.variant] * len(ts), pa.string()))
        for key, kind in self.entity_keys.items():
            columns[key] = pa.array(
                [v for c in chunks for v in c[5].get(key, [None] * len(c[0]))],
                pa.int64() if kind == "int64" else pa.string())
        return pa.table(columns)

    def _write(self, chunks) -> None:
        import pyarrow.parquet as pq

        table = self._table(chunks)
        first = float(chunks[0][0][0])
        fs, root = _filesystem(self.uri)
        folder = f"{root}/date={_day(first)}"
        fs.create_dir(folder, recursive=True)
        self._seq += 1
        name = f"part-{int(first * 1000)}-{self._tag}-{self._seq:06d}.parquet"
        # Write under a dot name and rename: readers skip dot files, never see half a file.
        tmp, final = f"{folder}/.{name}.tmp", f"{folder}/{name}"
        pq.write_table(table, tmp, filesystem=fs)
        fs.move(tmp, final)


def _request_columns(request: Any, n: int, keys: Mapping[str, str]) -> dict[str, list]:
    """The entity keys' values for the request's `n` rows, by key, from the body's shape the
    rows were read from; keys the body does not hold for every row are left out."""
    if isinstance(request, dict) and isinstance(request.get("inputs"), dict):
        out = {}
        for key in keys:
            values = request["inputs"].get(key)
            values = values if isinstance(values, list) else [values] * n
            if len(values) == n:
                out[key] = values
        return out
    if isinstance(request, dict):
        instances = request.get("instances", [request])
    else:
        instances = request
    if not isinstance(instances, list) or len(instances) != n:
        return {}
    return {key: [i.get(key) if isinstance(i, dict) else None for i in instances]
            for key in keys}


_INTEGER = re.compile(r"-?[0-9]{1,19}")


def _key_value(value: Any, kind: str) -> int | str | None:
    if isinstance(value, bool):  # JSON true is no id
        return None
    if kind == "int64":
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            value = int(value)
        return value if isinstance(value, int) and -(1 << 63) <= value < (1 << 63) else None
    if isinstance(value, int | str):
        text = str(value)
        return text if len(text) <= MAX_KEY_CHARS else None
    return None


def _prediction_column(predictions: np.ndarray) -> np.ndarray:
    if predictions.ndim == 2:  # multi-class probabilities: log the predicted class
        return predictions.argmax(axis=1).astype(np.float64)
    return predictions.astype(np.float64, copy=False)


def read_log(uri: str, *, since: float | None = None, until: float | None = None):
    """The logged predictions with since <= timestamp < until, as a pandas DataFrame.

    An empty frame comes back when nothing was logged in the window (a missing log is an
    empty log): the caller decides that this is an error. Files written by older servers
    may lack a feature column; it comes back missing (null), for the caller to report.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    filesystem, root = _filesystem(uri)
    # A file sits in the folder of its first row's day and may run past midnight: start a
    # day early; the timestamp filter below is exact.
    first = _day(since - 86400) if since is not None else None
    last = _day(until) if until is not None else None
    info = filesystem.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return pd.DataFrame(columns=[TIMESTAMP_COLUMN, VERSION_COLUMN])
    tables = []
    for day in sorted(filesystem.get_file_info(pafs.FileSelector(root)),
                      key=lambda i: i.base_name):
        if day.type != pafs.FileType.Directory or not day.base_name.startswith("date="):
            continue
        date = day.base_name[len("date="):]
        if (first and date < first) or (last and date > last):
            continue
        for file in sorted(filesystem.get_file_info(pafs.FileSelector(day.path)),
                           key=lambda i: i.base_name):
            if file.base_name.startswith(".") or not file.base_name.endswith(".parquet"):
                continue
            tables.append(pq.read_table(file.path, filesystem=filesystem))
    if not tables:
        return pd.DataFrame(columns=[TIMESTAMP_COLUMN, VERSION_COLUMN])
    table = pa.concat_tables(tables, promote_options="default")
    ts = table.column(TIMESTAMP_COLUMN)
    mask = None
    if since is not None:
        mask = pc.greater_equal(ts, pa.scalar(int(since * 1e6), pa.timestamp("us", "UTC")))
    if until is not None:
        upper = pc.less(ts, pa.scalar(int(until * 1e6), pa.timestamp("us", "UTC")))
        mask = upper if mask is None else pc.and_(mask, upper)
    if mask is not None:
        table = table.filter(mask)
    return table.to_pandas()
