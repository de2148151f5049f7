"""Consume a batch, write it to every view's online store, then commit: at least once.

A message that cannot be decoded is counted (`failed{reason}`) and passed over: it would
fail the same way after every restart and stall the partition for good. A batch that the
online store refuses is retried with backoff; if it still fails, the process exits without
committing, the pod restarts, and the group re-reads the batch. Lag is the distance from
the group's position to each assigned partition's end, refreshed after every batch.

`consumer` is confluent_kafka.Consumer or anything with its methods (subscribe, consume,
commit, assignment, position, get_watermark_offsets, close); `writer` writes rows of one
view (command.py: Feast's `write_to_online_store`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from mlc import metrics as contract

from .messages import BadMessage, ViewShape, decode

log = logging.getLogger("mlc.ingest")
POLL_SECONDS = 1.0
WRITE_ATTEMPTS = 4
BACKOFF_SECONDS = 1.0


class Writer(Protocol):
    def __call__(self, view: str, rows: list[dict[str, object]]) -> None: ...


class WriteFailed(Exception):
    pass


class IngestMetrics:
    def __init__(self, source: str, views: list[str], registry: CollectorRegistry):
        def make(metric: contract.Metric, cls):
            return cls(metric.name.removesuffix("_total"), metric.help, metric.labels,
                       registry=registry)

        self.source = source
        consumed = make(contract.INGEST_CONSUMED, Counter)
        pushed = make(contract.INGEST_PUSHED, Counter)
        failed = make(contract.INGEST_FAILED, Counter)
        self.lag = make(contract.INGEST_LAG, Gauge)
        self.consumed = consumed.labels(source=source)
        self.pushed = {v: pushed.labels(source=source, view=v) for v in views}
        self.failed = {r: failed.labels(source=source, reason=r)
                       for r in contract.INGEST_FAILURE_REASONS}
        self.set_lag = PartitionLag(self.lag, source)


class Ingestor:
    def __init__(self, consumer: Any, write: Writer, shapes: list[ViewShape],
                 timestamp_field: str, metrics: IngestMetrics, *, batch_size: int,
                 start_from: str = "latest", sleep: Callable[[float], None] = time.sleep):
        self.consumer = consumer
        self.write = write
        self.shapes = shapes
        self.timestamp_field = timestamp_field
        self.metrics = metrics
        self.batch_size = batch_size
        self.start_from = start_from
        self.sleep = sleep

    def run(self, topic: str, stop: threading.Event) -> None:
        self.consumer.subscribe([topic])
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.consumer.close()  # leaves the group at once: its partitions move on now

    def step(self) -> int:
        """One batch: the number of messages it held."""
        messages = self.consumer.consume(num_messages=self.batch_size, timeout=POLL_SECONDS)
        rows: dict[str, list[dict[str, object]]] = {s.view: [] for s in self.shapes}
        for message in messages:
            error = message.error()
            if error is not None:
                self.metrics.failed["kafka"].inc()
                if getattr(error, "fatal", lambda: False)():
                    raise WriteFailed(f"the Kafka client failed for good: {error}")
                log.warning("kafka: %s", error)
                continue
            self.metrics.consumed.inc()
            try:
                decoded = decode(message.value(), self.shapes, self.timestamp_field)
            except BadMessage as exc:
                self.metrics.failed[exc.reason].inc()
                log.warning("partition %s offset %s skipped (%s): %s", message.partition(),
                            message.offset(), exc.reason, exc)
                continue
            for view, row in decoded.items():
                rows[view].append(row)
        for view, batch in rows.items():
            if batch:
                self._write(view, batch)
        if messages:
            self.consumer.commit(asynchronous=False)
        self.metrics.set_lag(self.lags())
        return len(messages)

    def _write(self, view: str, batch: list[dict[str, object]]) -> None:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                self.write(view, batch)
            except Exception as exc:  # the store's client raises its own kinds
                log.warning("writing %d rows to %s failed (attempt %d): %s", len(batch), view,
                            attempt + 1, exc)
                if attempt + 1 == WRITE_ATTEMPTS:
                    self.metrics.failed["write"].inc(len(batch))
                    raise WriteFailed(f"the online store refused {len(batch)} rows of {view}: "
                                      f"{exc}") from exc
                self.sleep(BACKOFF_SECONDS * 2 ** attempt)
            else:
                self.metrics.pushed[view].inc(len(batch))
                return

    def lags(self) -> dict[int, int]:
        return partition_lags(self.consumer, self.start_from)


class PartitionLag:
    """Sets a consumer's lag gauge (labels: its owner, then `partition`) to the lag of each
    partition it holds; a partition revoked in a rebalance leaves the gauge. The ingestion and
    stream scoring both measure their group this way."""

    def __init__(self, gauge: Any, owner: str):
        self.gauge, self.owner = gauge, owner
        self._partitions: set[str] = set()

    def __call__(self, lags: dict[int, int]) -> None:
        current = {str(p) for p in lags}
        for gone in self._partitions - current:
            self.gauge.remove(self.owner, gone)
        for partition, lag in lags.items():
            self.gauge.labels(self.owner, str(partition)).set(lag)
        self._partitions = current


def partition_lags(consumer: Any, start_from: str) -> dict[int, int]:
    """Partition -> messages from the group's position to the partition's end, for every
    partition assigned to `consumer` (stream scoring measures its lag the same way)."""
    out = {}
    assigned = list(consumer.assignment())
    positions = consumer.position(assigned) if assigned else []
    for tp in positions:
        low, high = consumer.get_watermark_offsets(tp, timeout=POLL_SECONDS, cached=False)
        # a negative offset: no position yet, so the group starts where it is told to
        start = low if start_from == "earliest" else high
        position = tp.offset if tp.offset >= 0 else start
        out[tp.partition] = max(0, high - position)
    return out
