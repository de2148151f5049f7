"""Consume a batch, score it, produce the scored events, flush, then commit: at least once.

One batch at a time: up to `batch_size` events, or what `linger` brought. Each event is a
JSON object; its row is built as the online server builds a request's (serve/validation.py
for the features it carries, serve/features.py for the entity keys it carries when the
endpoint looks features up online). An event that cannot become a row is poison: written
unchanged to the dead-letter topic with the reason in a header, or skipped, as ml.yaml says;
counted either way. The rest go through the model in one call, and each scored event is
produced to the output topic, keyed by the carried-over key.

Offsets are committed only after the producer's flush reports every output (scored and
dead-lettered) delivered. A flush that leaves messages undelivered, a model call that
raises, or an online-store lookup that fails ends the process without a commit: Kubernetes
restarts it and the group re-reads the batch (a scored event may then appear twice in the
output topic, never not at all).

`consumer` is confluent_kafka.Consumer or anything with its methods (subscribe, consume,
commit, assignment, position, get_watermark_offsets, close), `producer` the same of
confluent_kafka.Producer (produce, poll, flush).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from mlc import metrics as contract
from mlc import stream_contract
from mlc.runtime.ingest.loop import PartitionLag, partition_lags
from mlc.runtime.serve.validation import RequestError, Signature

log = logging.getLogger("mlc.stream")
FLUSH_SECONDS = 10.0


class ScoringFailed(Exception):
    """The batch could not be completed: nothing of it is committed."""


class Poison(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason  # a metrics.STREAM_POISON_REASONS value


class StreamMetrics:
    def __init__(self, endpoint: str, registry: CollectorRegistry):
        def make(metric: contract.Metric, cls):
            return cls(metric.name.removesuffix("_total"), metric.help, metric.labels,
                       registry=registry)

        self.endpoint = endpoint
        self.consumed = make(contract.STREAM_CONSUMED, Counter).labels(endpoint=endpoint)
        self.scored = make(contract.STREAM_SCORED, Counter).labels(endpoint=endpoint)
        poison = make(contract.STREAM_POISON, Counter)
        self.poison = {(r, a): poison.labels(endpoint=endpoint, reason=r, action=a)
                       for r in contract.STREAM_POISON_REASONS
                       for a in contract.STREAM_POISON_ACTIONS}
        failed = make(contract.STREAM_FAILED, Counter)
        self.failed = {r: failed.labels(endpoint=endpoint, reason=r)
                       for r in contract.STREAM_FAILURE_REASONS}
        self.lag = make(contract.STREAM_LAG, Gauge)
        self.set_lag = PartitionLag(self.lag, endpoint)


class EventRows:
    """An event -> the model's input row, as the online server reads a request: its
    features by name (Signature), or its entity keys looked up in the online store."""

    def __init__(self, signature: Signature, online: Any = None):
        self.signature = signature
        self.online = online  # serve.features.OnlineFeatures, or None

    def row(self, event: dict) -> Any:
        """What `matrix` takes for this event; Poison if it has none."""
        try:
            if self.online is not None:
                return self.online.entity_rows(event)[0]
            return self.signature.rows_from_instances([event])[0]
        except RequestError as exc:
            raise Poison("schema", exc.message) from exc

    def matrix(self, rows: list[Any]) -> np.ndarray:
        if self.online is not None:
            try:
                return self.online.lookup(rows)
            except Exception as exc:  # the store's client raises its own kinds
                raise ScoringFailed(f"the online feature lookup failed: {exc}") from exc
        return np.vstack(rows)


@dataclass(frozen=True)
class Model:
    """What the loop needs of a loaded model (serve/loader.py's LoadedModel)."""

    name: str
    version: str
    predict: Callable[[np.ndarray], np.ndarray]
    classes: Sequence[object] | None  # per-class outputs' labels; None: one prediction


class StreamScorer:
    def __init__(self, consumer: Any, producer: Any, model: Model, rows: EventRows,
                 metrics: StreamMetrics, *, output_topic: str, dead_letter_topic: str | None,
                 key_field: str | None, batch_size: int, linger_seconds: float,
                 start_from: str = "latest", source_topic: str = ""):
        self.consumer = consumer
        self.producer = producer
        self.model = model
        self.rows = rows
        self.metrics = metrics
        self.output_topic = output_topic
        self.dead_letter_topic = dead_letter_topic
        self.key_field = key_field
        self.batch_size = batch_size
        self.linger_seconds = linger_seconds
        self.start_from = start_from
        self.source_topic = source_topic
        self._undelivered: list[str] = []

    def run(self, topic: str, stop: threading.Event) -> None:
        self.source_topic = topic
        self.consumer.subscribe([topic])
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.consumer.close()  # leaves the group at once: its partitions move on now

    def step(self) -> int:
        """One batch: the number of messages it held."""
        messages = self.consumer.consume(num_messages=self.batch_size,
                                         timeout=self.linger_seconds)
        good: list[tuple[Any, Any, dict]] = []  # (message, row, event)
        poison: list[tuple[Any, Poison]] = []
        for message in messages:
            error = message.error()
            if error is not None:
                self.metrics.failed["kafka"].inc()
                if getattr(error, "fatal", lambda: False)():
                    raise ScoringFailed(f"the Kafka client failed for good: {error}")
                log.warning("kafka: %s", error)
                continue
            self.metrics.consumed.inc()
            try:
                event = _event(message.value())
                if self.key_field is not None and event.get(self.key_field) is None:
                    raise Poison("schema", f"the key `{self.key_field}` is missing")
                good.append((message, self.rows.row(event), event))
            except Poison as exc:
                poison.append((message, exc))
        if good:
            try:
                matrix = self.rows.matrix([row for _, row, _ in good])
            except ScoringFailed:
                self.metrics.failed["features"].inc()
                raise
            try:
                predictions = np.asarray(self.model.predict(matrix))
            except Exception as exc:
                self.metrics.failed["model"].inc()
                raise ScoringFailed(f"the model failed on a batch of {len(good)}: "
                                    f"{exc}") from exc
            for (message, _, event), prediction in zip(good, predictions, strict=True):
                self._produce(self.output_topic, self._scored(event, prediction),
                              self._key(message, event), None)
        for message, exc in poison:
            self._poison(message, exc)
        if messages:
            self._flush(len(good) + (len(poison) if self.dead_letter_topic else 0))
            self.consumer.commit(asynchronous=False)
            self.metrics.scored.inc(len(good))
            action = "dead_letter" if self.dead_letter_topic else "skipped"
            for _, exc in poison:
                self.metrics.poison[(exc.reason, action)].inc()
        self.metrics.set_lag(partition_lags(self.consumer, self.start_from))
        return len(messages)

    def _scored(self, event: dict, prediction: np.ndarray) -> bytes:
        out: dict[str, object] = {}
        if self.key_field is not None:
            out[self.key_field] = event[self.key_field]
        if np.ndim(prediction) == 1 and np.size(prediction) > 1:
            labels = self.model.classes or range(np.size(prediction))
            for label, p in zip(labels, prediction, strict=True):
                out[f"prediction_{label}"] = float(p)
        else:
            out["prediction"] = float(np.ravel(prediction)[0])
        out["model"] = self.model.name
        out["model_version"] = self.model.version
        return json.dumps(out, separators=(",", ":")).encode()

    def _key(self, message: Any, event: dict) -> bytes | None:
        if self.key_field is None:
            return message.key()
        value = event[self.key_field]
        return (value if isinstance(value, str) else json.dumps(value)).encode()

    def _poison(self, message: Any, exc: Poison) -> None:
        log.warning("partition %s offset %s: %s (%s): %s", message.partition(),
                    message.offset(), "dead-lettered" if self.dead_letter_topic else "skipped",
                    exc.reason, exc)
        if self.dead_letter_topic is None:
            return
        headers = [(stream_contract.REASON_HEADER, exc.reason.encode()),
                   ("mlc-source-topic", self.source_topic.encode()),
                   ("mlc-source-partition", str(message.partition()).encode()),
                   ("mlc-source-offset", str(message.offset()).encode())]
        self._produce(self.dead_letter_topic, message.value(), message.key(), headers)

    def _produce(self, topic: str, value: bytes | None, key: bytes | None,
                 headers: list[tuple[str, bytes]] | None) -> None:
        def delivered(error, _message) -> None:
            if error is not None:
                self._undelivered.append(str(error))
        try:
            self.producer.produce(topic, value=value, key=key, headers=headers,
                                  on_delivery=delivered)
        except Exception as exc:  # BufferError, KafkaException: the batch cannot complete
            self.metrics.failed["produce"].inc()
            raise ScoringFailed(f"producing to {topic} failed: {exc}") from exc
        self.producer.poll(0)  # serve delivery reports as they come

    def _flush(self, sent: int) -> None:
        left = self.producer.flush(FLUSH_SECONDS)
        errors, self._undelivered = self._undelivered, []
        if left or errors:
            self.metrics.failed["produce"].inc()
            raise ScoringFailed(f"{left or len(errors)} of {sent} outputs were not delivered "
                                f"({'; '.join(errors[:3]) or 'flush timed out'}); the batch "
                                "is not committed and will be read again")


def _event(value: bytes | None) -> dict:
    try:
        body = json.loads(value if value is not None else b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Poison("decode", f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Poison("decode", f"a JSON {type(body).__name__}, not an object")
    return body


__all__ = ["EventRows", "Model", "Poison", "ScoringFailed", "StreamMetrics",
           "StreamScorer"]
