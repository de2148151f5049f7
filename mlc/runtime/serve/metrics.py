"""The server's Prometheus metrics: exactly the serving part of the contract (mlc/metrics.py).

Names, kinds, labels, help texts and buckets all come from the contract's `Metric`
constants; nothing here spells a metric name. The values live in plain counters and numpy
arrays and are turned into prometheus_client metric families only when Prometheus scrapes:
a request costs a dict increment and a bisect, and a model call costs a list append; the
rows and predictions of many calls are bucketed together in one vectorised pass, in a
background thread (one `observe` per value would cost milliseconds per 64-row batch of 30
features).

Every series carries the server's `variant` (its A/B variant or role). The request counters
and latency histograms of every route and status code the server answers with exist at 0 from
start-up, and again for each model version as soon as it is loaded (before it is ready):
Prometheus must see a counter at 0 before its first increment to count that increment, and
an error ratio must read 0, not nothing, while no request has failed.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from mlc import metrics as contract

SERVE_METRICS = tuple(m for m in contract.CONTRACT if m.exporter == "serve")
AGGREGATE_ROWS = 8192  # rows of model calls kept before they are counted (bounds memory)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def family(metric: contract.Metric):
    """An empty metric family for `metric`, of its kind, with its labels."""
    cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
           "histogram": HistogramMetricFamily}[metric.kind]
    return cls(metric.name, metric.help, labels=list(metric.labels))


def label_values(metric: contract.Metric, **labels: str) -> list[str]:
    """Label values in the contract's order; a missing or extra label is a bug here."""
    if set(labels) != set(metric.labels):
        raise ValueError(f"{metric.name} takes labels {metric.labels}, got {sorted(labels)}")
    return [str(labels[name]) for name in metric.labels]


class Histogram:
    """Bucket counts (non-cumulative, last = +Inf), sum and count of one label set."""

    __slots__ = ("bounds", "counts", "total", "_bounds")

    def __init__(self, bounds: Sequence[float]):
        self._bounds = [float(b) for b in bounds]  # bisect on a list: no numpy per request
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, value)] += 1
        self.total += value

    def observe_many(self, values: np.ndarray) -> None:
        values = values[~np.isnan(values)]
        if values.size:
            # `le` buckets: a value equal to a bound belongs to that bound's bucket
            at_most = (values[None, :] <= self.bounds[:, None]).sum(axis=1)
            added = [*np.diff(at_most, prepend=0).tolist(), int(values.size - at_most[-1])]
            self.counts = [a + b for a, b in zip(self.counts, added, strict=True)]
            self.total += float(values.sum())

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = np.cumsum(self.counts)
        les = [_le(b) for b in self.bounds] + ["+Inf"]
        return list(zip(les, cumulative.tolist(), strict=True))


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class FeatureHistograms:
    """One histogram per input feature, updated for many rows at once.

    Counts are kept cumulative, as Prometheus exposes them: for each bound, the values at
    most that bound, found by sorting each column once and searching the bounds in it
    (faster than a search per value, or a comparison pass per bound); missing values (NaN)
    sort last and are not counted at all.
    """

    def __init__(self, features: Sequence[str], bounds: Sequence[float]):
        self.features = list(features)
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.at_most = np.zeros((len(self.features), len(bounds)), dtype=np.int64)
        self.count = np.zeros(len(self.features), dtype=np.int64)
        self.totals = np.zeros(len(self.features), dtype=np.float64)

    def observe_rows(self, rows: np.ndarray) -> None:
        if rows.size == 0:
            return
        columns = np.sort(rows.T, axis=1)  # NaN sorts last, above every bound
        for j, column in enumerate(columns):
            self.at_most[j] += np.searchsorted(column, self.bounds, side="right")
        missing = np.isnan(columns[:, -1])  # any NaN in a column ends up in its last place
        if missing.any():
            present = ~np.isnan(columns)
            self.count += present.sum(axis=1)
            self.totals += np.where(present, columns, 0.0).sum(axis=1)
        else:
            self.count += len(rows)
            self.totals += columns.sum(axis=1)

    def histogram(self, i: int) -> tuple[list[tuple[str, float]], float]:
        les = [_le(b) for b in self.bounds] + ["+Inf"]
        counts = [*self.at_most[i].tolist(), int(self.count[i])]
        return list(zip(les, counts, strict=True)), float(self.totals[i])


class ServeMetrics:
    """The collector registered with a private registry; `render()` is the /metrics body.

    Request observations come from the event loop (plain dict and list updates). A model
    call only appends its rows and predictions to a list (`observe_batch`, in the model
    thread); a background thread counts them, and hands them to the listeners (the
    prediction log), once AGGREGATE_ROWS rows or a second's worth have gathered, and a
    scrape counts what is left first. The serving path pays an append per model call.
    """

    def __init__(self, endpoint: str, features: Sequence[str], queue_capacity: int,
                 inflight: Callable[[], int], queue_depth: Callable[[], int],
                 variant: str = "primary"):
        self.endpoint = endpoint
        self.variant = variant
        self.queue_capacity = queue_capacity
        self._inflight = inflight
        self._queue_depth = queue_depth
        self._lock = threading.Lock()  # the histograms below
        self._pending_lock = threading.Lock()  # the list of calls not counted yet
        self.requests: dict[tuple[str, str, str], int] = {}
        self.rejected = dict.fromkeys(contract.REJECTION_REASONS, 0)
        # (section, result): what a running server made of its rewritten config
        # (config_reload.py); every server exports them, those that reload nothing at 0
        self.config_reloads = {(section, result): 0
                               for section in contract.CONFIG_RELOAD_SECTIONS
                               for result in contract.CONFIG_RELOAD_RESULTS}
        self.durations: dict[tuple[str, str], Histogram] = {}
        self.explains = dict.fromkeys(contract.EXPLAIN_CODES, 0)  # POST /explain, by code
        self.explain_durations = Histogram(contract.EXPLAIN_DURATION.buckets)
        self.batch_sizes: dict[str, Histogram] = {}
        self.predictions: dict[str, Histogram] = {}
        self.features = FeatureHistograms(features, contract.FEATURE_VALUES.buckets)
        self.listeners: list[Callable[[np.ndarray, np.ndarray, str, float], object]] = []
        self._pending: list[tuple[str, np.ndarray, np.ndarray, float]] = []
        self._pending_rows = 0
        self._pending_since = 0.0
        self._counter = ThreadPoolExecutor(1, thread_name_prefix="metrics")
        self.model: dict[str, str] | None = None  # model, model_version, alias
        self.trained_at: float | None = None
        self.ready = False
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.expect_version("")  # what is answered before a model is loaded

    def expect_version(self, version: str) -> None:
        """Start every request series of `version` at 0 (see the module docstring)."""
        for route, codes in contract.SERVE_CODES.items():
            for code in codes:
                self.requests.setdefault((version, route, code), 0)
            if (version, route) not in self.durations:
                self.durations[(version, route)] = Histogram(contract.REQUEST_DURATION.buckets)
        if version:  # a loaded model's calls: the prediction drift gate reads these
            with self._lock:
                if version not in self.batch_sizes:
                    self.batch_sizes[version] = Histogram(contract.BATCH_SIZE.buckets)
                    self.predictions[version] = Histogram(contract.PREDICTIONS.buckets)

    # --- observations -----------------------------------------------------------------------
    def observe_request(self, version: str, route: str, code: int, seconds: float) -> None:
        key = (version, route, str(code))
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.durations.get((version, route))
        if hist is None:
            hist = self.durations[(version, route)] = Histogram(
                contract.REQUEST_DURATION.buckets)
        hist.observe(seconds)

    def observe_explain(self, code: int, seconds: float) -> None:
        key = str(code)
        self.explains[key] = self.explains.get(key, 0) + 1
        self.explain_durations.observe(seconds)

    def observe_rejected(self, reason: str) -> None:
        self.rejected[reason] += 1  # a reason outside the contract is a bug: KeyError

    def observe_batch(self, version: str, rows: np.ndarray, predictions: np.ndarray) -> None:
        """Record one model call; counted later, off the serving path."""
        now = time.time()
        with self._pending_lock:
            if not self._pending:
                self._pending_since = now
            self._pending.append((version, rows, predictions, now))
            self._pending_rows += len(rows)
            if self._pending_rows < AGGREGATE_ROWS and now - self._pending_since < 1.0:
                return
            calls = self._take_pending()
        self._counter.submit(self._count, calls)

    def _take_pending(self) -> list:
        calls, self._pending, self._pending_rows = self._pending, [], 0
        return calls

    def flush(self) -> None:
        """Count (and hand to the listeners) every call recorded so far."""
        with self._pending_lock:
            calls = self._take_pending()
        self._count(calls)

    def close(self) -> None:
        self._counter.shutdown(wait=True)
        self.flush()

    def _count(self, calls: list) -> None:
        if not calls:
            return
        with self._lock:
            by_version: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
            for version, rows, predictions, _ in calls:
                by_version.setdefault(version, []).append((rows, predictions))
            for version, batches in by_version.items():
                sizes = self.batch_sizes.get(version)
                if sizes is None:
                    sizes = self.batch_sizes[version] = Histogram(contract.BATCH_SIZE.buckets)
                    self.predictions[version] = Histogram(contract.PREDICTIONS.buckets)
                sizes.observe_many(np.array([len(r) for r, _ in batches], dtype=np.float64))
                # multi-class: the probability of the predicted class
                predictions = np.concatenate([p if p.ndim == 1 else p.max(axis=1)
                                              for _, p in batches])
                self.predictions[version].observe_many(predictions.astype(np.float64))
                self.features.observe_rows(np.concatenate([r for r, _ in batches]))
        for listener in self.listeners:
            for version, rows, predictions, when in calls:
                listener(rows, predictions, version, when)

    def set_features(self, features: Sequence[str]) -> None:
        self.flush()
        with self._lock:
            self.features = FeatureHistograms(features, contract.FEATURE_VALUES.buckets)

    def set_model(self, model: str, version: str, alias: str | None,
                  trained_at: float | None) -> None:
        self.expect_version(version)
        self.model = {"model": model, "model_version": version, "alias": alias or ""}
        self.trained_at = trained_at

    # --- exposition -----------------------------------------------------------------------
    def describe(self):
        return []

    def collect(self) -> Iterator:
        e, v = self.endpoint, self.variant
        requests = family(contract.REQUESTS)
        for (version, route, code), n in sorted(self.requests.items()):
            requests.add_metric(label_values(contract.REQUESTS, endpoint=e, variant=v,
                                             model_version=version, route=route, code=code), n)
        yield requests
        durations = family(contract.REQUEST_DURATION)
        for (version, route), h in sorted(self.durations.items()):
            durations.add_metric(label_values(contract.REQUEST_DURATION, endpoint=e, variant=v,
                                              model_version=version, route=route),
                                 h.buckets(), h.total)
        yield durations
        rejected = family(contract.REJECTED)
        for reason, n in sorted(self.rejected.items()):
            rejected.add_metric(label_values(contract.REJECTED, endpoint=e, variant=v,
                                             reason=reason), n)
        yield rejected
        reloads = family(contract.CONFIG_RELOADS)
        for (section, result), n in sorted(self.config_reloads.items()):
            reloads.add_metric(label_values(contract.CONFIG_RELOADS, endpoint=e, variant=v,
                                            section=section, result=result), n)
        yield reloads
        explains = family(contract.EXPLAIN_REQUESTS)
        for code, n in sorted(self.explains.items()):
            explains.add_metric(label_values(contract.EXPLAIN_REQUESTS, endpoint=e, variant=v,
                                             code=code), n)
        yield explains
        explain_time = family(contract.EXPLAIN_DURATION)
        explain_time.add_metric(label_values(contract.EXPLAIN_DURATION, endpoint=e, variant=v),
                                self.explain_durations.buckets(), self.explain_durations.total)
        yield explain_time
        for metric, value in ((contract.INFLIGHT, self._inflight()),
                              (contract.QUEUE_DEPTH, self._queue_depth()),
                              (contract.QUEUE_CAPACITY, self.queue_capacity),
                              (contract.MODEL_READY, 1 if self.ready else 0)):
            gauge = family(metric)
            gauge.add_metric(label_values(metric, endpoint=e, variant=v), value)
            yield gauge
        self.flush()
        with self._lock:
            sizes, preds = family(contract.BATCH_SIZE), family(contract.PREDICTIONS)
            for version in sorted(self.batch_sizes):
                labels = label_values(contract.BATCH_SIZE, endpoint=e, variant=v,
                                      model_version=version)
                h = self.batch_sizes[version]
                sizes.add_metric(labels, h.buckets(), h.total)
                h = self.predictions[version]
                preds.add_metric(label_values(contract.PREDICTIONS, endpoint=e, variant=v,
                                              model_version=version), h.buckets(), h.total)
            values = family(contract.FEATURE_VALUES)
            for i, name in enumerate(self.features.features):
                buckets, total = self.features.histogram(i)
                values.add_metric(label_values(contract.FEATURE_VALUES, endpoint=e, variant=v,
                                               feature=name), buckets, total)
        yield sizes
        yield preds
        yield values
        info, trained = family(contract.MODEL_INFO), family(contract.MODEL_TRAINED)
        if self.model is not None:
            info.add_metric(label_values(contract.MODEL_INFO, endpoint=e, variant=v,
                                         **self.model), 1)
            if self.trained_at is not None:
                trained.add_metric(label_values(
                    contract.MODEL_TRAINED, endpoint=e, variant=v, model=self.model["model"],
                    model_version=self.model["model_version"]), self.trained_at)
        yield info
        yield trained

    def render(self) -> bytes:
        return generate_latest(self.registry)
