"""Per-step metric logging that does not slow training down.

Logging each step with `mlflow.log_metric` is a round trip to the tracking store per value:
with a SQLite store it makes a small model's training several times slower. Even batched,
MLflow's SQLite store spends 0.15-0.2 ms of CPU per value on its ORM (a sixth of the bundled
example's training step), and a thread doing that would hold the GIL the training loop needs.

So the work is split three ways:

- `BackgroundLogger`, in the training loop: `log` appends to a list (a few microseconds);
  every `interval` seconds the list is handed to a sink. GPU values are converted 64 at a
  time, so a GPU run synchronises once per 64 steps, not once per step.
- a sink, which stores elsewhere: `ProcessSink`, a separate lower-priority process (where
  the step has a core to spare: neither the training process's CPU time nor its GIL), or
  `ThreadSink`, a thread (where it has not: no process to start, `start_sink`).
- `MetricWriter`, which the sink calls: `log_batch`, except on MLflow's SQL stores, where it
  inserts the values in one statement with MLflow's own table and updates the run's latest
  values with MLflow's own rule (about 10x less CPU per value). Anything unexpected there
  (another MLflow, a duplicate row, a deleted run) rolls back and leaves the values to
  `log_batch`, which stores them or says why it cannot.

The trainer hands over the last values before it saves the model and waits for them after.
`bench/bench_tracking.py` measures each way against no logging at all.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
Values = list[tuple[str, float, int, int]]  # (key, value, step, timestamp in ms)


class SyncLogger:
    """One `log_metric` call per value: what the background logger is measured against."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log(self, key: str, value: Any, step: int) -> None:
        number = value.item() if hasattr(value, "item") else value
        self.client.log_metric(self.run_id, key, float(number), step=step)

    def close(self) -> None:
        pass


class BackgroundLogger:
    """Buffers metrics in the training loop and hands them to a sink every `interval` s.

    `log` appends to a list (tensors are stacked and converted `stack_every` at a time, so a
    GPU run synchronises once per that many values); the sink stores them elsewhere. `close`
    hands over the rest and waits until everything is stored.
    """

    def __init__(self, sink, run_id: str, *, interval: float = 1.0, stack_every: int = 64):
        self.sink, self.run_id = sink, run_id
        self.interval = interval
        self.stack_every = stack_every
        self._tensors: list[tuple[str, Any, int, int]] = []
        self._ready: Values = []
        self._due = time.monotonic() + interval

    def log(self, key: str, value: Any, step: int) -> None:
        stamp = int(time.time() * 1000)
        if getattr(value, "is_cpu", True):  # a number, or a tensor in memory
            number = value.item() if hasattr(value, "item") else value
            self._ready.append((key, float(number), step, stamp))
        else:  # reading a GPU value waits for the GPU: convert later, many at once
            self._tensors.append((key, value.detach(), step, stamp))
            if len(self._tensors) >= self.stack_every:
                self._convert()
        if time.monotonic() >= self._due:
            self.flush()

    def _convert(self) -> None:
        import torch

        pending, self._tensors = self._tensors, []
        if pending:
            values = torch.stack([v.reshape(()).float() for _, v, _, _ in pending]).tolist()
            self._ready.extend((k, val, s, t) for (k, _, s, t), val in zip(pending, values,
                                                                            strict=True))

    def flush(self) -> None:
        self._convert()
        ready, self._ready = self._ready, []
        self._due = time.monotonic() + self.interval
        if ready:
            self.sink.send(self.run_id, ready)

    def close(self) -> None:
        """Hand over what is left and wait until the sink stored everything; raises if any
        value could not be stored."""
        self.flush()
        self.sink.drain()


class MetricWriter:
    """Stores metric values in a tracking store: `log_batch`, or the SQL fast path."""

    def __init__(self, client):
        self.client = client
        self.bulk = _sql_store(client)  # None: log_batch only
        self.bulk_batches = 0  # how many batches took the fast path (the tests read it)

    def write(self, run_id: str, values: Values) -> None:
        for i in range(0, len(values), MAX_BATCH):
            chunk = values[i:i + MAX_BATCH]
            if self.bulk is not None and self._insert(run_id, chunk):
                self.bulk_batches += 1
                continue
            self._log_batch(run_id, chunk)

    def _log_batch(self, run_id: str, values: Values) -> None:
        from mlflow.entities import Metric

        self.client.log_batch(run_id, synchronous=True, metrics=[
            Metric(key=k, value=v, timestamp=t, step=s) for k, v, s, t in values])

    def _insert(self, run_id: str, values: Values) -> bool:
        """One INSERT of every value plus MLflow's own latest-value update, in one
        transaction. False (nothing written) where log_batch must do it instead."""
        import sqlalchemy
        from mlflow.store.tracking.dbmodels.models import SqlMetric
        from mlflow.utils.validation import _validate_metric

        store = self.bulk
        rows: dict[tuple, dict[str, Any]] = {}
        for key, value, step, stamp in values:
            is_nan, stored = store.sanitize_metric_value(value)
            row = {"run_uuid": run_id, "key": key, "value": stored, "timestamp": stamp,
                   "step": step, "is_nan": is_nan}
            rows.setdefault((key, stamp, step, stored, is_nan), row)  # as log_batch dedups
        latest: dict[str, dict[str, Any]] = {}
        for row in rows.values():
            best = latest.get(row["key"])
            if best is None or (row["step"], row["timestamp"], row["value"]) > (
                    best["step"], best["timestamp"], best["value"]):
                latest[row["key"]] = row
        try:
            for key in latest:  # names and values as log_batch checks them
                _validate_metric(key, latest[key]["value"], latest[key]["timestamp"],
                                 latest[key]["step"])
            with store.ManagedSessionMaker(read_only=False) as session:
                store._check_run_is_active(store._get_run(run_uuid=run_id, session=session))
                session.execute(sqlalchemy.insert(SqlMetric.__table__), list(rows.values()))
                store._update_latest_metrics_if_necessary(
                    [SqlMetric(**row) for row in latest.values()], session)
                session.commit()
        except Exception:  # rolled back, nothing written: log_batch stores the values, or
            return False  # says why it cannot (no such run, a deleted run, a bad name)
        return True


def _sql_store(client):
    """MLflow's SQL store behind `client`, where the fast path knows its internals."""
    if os.environ.get("MLC_METRICS_BULK", "1") == "0":
        return None
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store
    except (ImportError, AttributeError):
        return None
    needed = ("ManagedSessionMaker", "sanitize_metric_value", "_get_run",
              "_check_run_is_active", "_update_latest_metrics_if_necessary")
    if type(store) is not SqlAlchemyStore or not all(hasattr(store, n) for n in needed):
        return None
    return store


def _sink_process(conn, tracking_uri: str) -> None:
    """The sender process: stores what arrives; answers `drain` with the first error."""
    from mlc.runtime.train.tracking import client_for

    try:
        os.nice(5)  # when cores are short, training goes first; the sender catches up
    except OSError:
        pass
    writer, error = None, None
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the training process is gone
            return
        if message[0] == "log" and error is None:
            try:
                if writer is None:
                    writer = MetricWriter(client_for(tracking_uri))
                writer.write(message[1], message[2])
            except Exception as exc:  # report at the next drain; keep the pipe drained
                error = f"{type(exc).__name__}: {exc}"
        elif message[0] == "drain":
            conn.send(("error", error) if error else ("ok",))
            error = None
        elif message[0] == "stop":
            return


class ProcessSink:
    """Stores metrics from a separate process: the tracking client's work (SQLAlchemy, HTTP)
    then takes neither the training process's CPU time nor its GIL. Start it early: the
    process imports MLflow while the data loads."""

    def __init__(self, tracking_uri: str):
        import multiprocessing

        # spawn, not fork: the training process has threads (torch, MLflow) to fork from
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_sink_process, args=(child, tracking_uri),
                                        name="mlc-metrics", daemon=True)
        self._process.start()
        child.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def send(self, run_id: str, values: Values) -> None:
        self._conn.send(("log", run_id, values))

    def drain(self) -> None:
        self._conn.send(("drain",))
        reply = self._conn.recv()
        if reply[0] == "error":
            raise RuntimeError(f"metrics could not be logged to MLflow: {reply[1]}")

    def stop(self) -> None:
        try:
            self._conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self._process.join(timeout=30)
        self._conn.close()


class ThreadSink:
    """Stores metrics from a thread of this process: no process to start, but the client's
    work shares the GIL with training (the benchmark's `thread` mode)."""

    def __init__(self, client):
        import queue

        self.writer = MetricWriter(client)
        self._queue: queue.Queue = queue.Queue()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="mlc-metrics", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self.writer.write(*item)
            except Exception as exc:
                self._error = f"{type(exc).__name__}: {exc}"
            finally:
                self._queue.task_done()

    def send(self, run_id: str, values: Values) -> None:
        self._queue.put((run_id, values))

    def drain(self) -> None:
        self._queue.join()
        if self._error:
            error, self._error = self._error, None
            raise RuntimeError(f"metrics could not be logged to MLflow: {error}")

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


def start_sink(tracking_uri: str, cores: float | None = None):
    """The metrics sink for a training run: a sender process where the step has a core to
    spare for it (`cores`, the CPU the step may use: 2 or more, or unknown), else a thread.

    A sender process costs a fixed 2-3 s of CPU to start (a Python interpreter importing
    MLflow and opening the store) before it saves anything per value. With a core of its
    own that cost and its per-value work stay off the training thread's core; with no core
    to spare (a pod limited to one CPU or less, `mlc run` on the dev profile) both land on
    it, and a thread of the training process, which imported MLflow already, does the same
    stores for the per-value work alone. MLC_METRICS_SINK=process or thread chooses."""
    from mlc.runtime.train.tracking import client_for

    chosen = os.environ.get("MLC_METRICS_SINK", "")
    if chosen not in ("process", "thread"):
        chosen = "process" if cores is None or cores >= 2 else "thread"
    if chosen == "process":
        try:
            return ProcessSink(tracking_uri)
        except OSError:
            pass
    return ThreadSink(client_for(tracking_uri))
