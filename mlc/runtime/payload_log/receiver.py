"""The payload logger's receiver: an HTTP server that KServe's agent posts CloudEvents to.

    POST /                                    one CloudEvent (binary mode): 200 once read,
                                              whatever it holds (the agent only logs the
                                              status; a bad event is counted and skipped)
    GET  /v2/health/live | /v2/health/ready   ready once the model version is known
    GET  /metrics                             mlc_payload_log_* counters (Prometheus)

Each event's body is read bounded in size and time (serve/body.py), behind the serving
runtime's connection limits (serve/connections.py) and an in-flight cap (503 past it). A
pair of request and response becomes rows of the model's inputs and its prediction
(decode.py), sampled and written by prediction_log.PredictionLogWriter with the event id as
`request_id`. The rows' `model_version` is the registry version the endpoint's model URI
names, re-read every MODEL_VERSION_REFRESH_SECONDS (the engine's own answer does not carry
the registry's version): rows of the minute after a promotion may name the version before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..serve import admission
from ..serve.body import BodyTimeout, Disconnected, read_body, send_response
from ..serve.settings import DEFAULT_BODY_TIMEOUT, DEFAULT_DRAIN_SECONDS, DEFAULT_SHUTDOWN_TIMEOUT
from . import cloudevents, decode
from .pairing import Pair, Pairing

log = logging.getLogger("mlc.payload_log")

LIVE_PATH, READY_PATH, METRICS_PATH = "/v2/health/live", "/v2/health/ready", "/metrics"
MODEL_VERSION_REFRESH_SECONDS = 60.0
VARIANT = "payload-log"  # the `variant` label of its refusals (mlc_rejected_requests_total)
# every reason a pair or an event is skipped for, counted from 0
REASONS = ("bad_id", "bad_instance", "bad_shape", "bad_tensor", "binary_data", "datatype",
           "event_type", "no_inputs", "no_instances", "no_model_version", "no_outputs",
           "no_predictions", "not_cloudevent", "not_json", "not_numeric", "ragged",
           "row_mismatch", "shape_mismatch", "specversion", "structured_mode",
           "too_large", "too_many_rows", "unknown_inputs")


@dataclass
class ReceiverSettings:
    endpoint: str
    protocol: str  # "v1" or "v2"
    task: str
    features: list[str]
    entity_keys: dict[str, str]
    log_uri: str
    sample: float
    model_uri: str
    tracking_uri: str
    max_body_bytes: int = 1 << 20
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT
    max_pending: int = 1000  # halves waiting for their other half
    max_pending_bytes: int = 64 << 20  # ...and their bodies' bytes
    pending_seconds: float = 30.0  # how long a half waits
    max_inflight: int = 64
    retry_after_seconds: int = 1
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    shutdown_timeout_seconds: int = DEFAULT_SHUTDOWN_TIMEOUT
    flush_rows: int = 10_000
    flush_seconds: float = 30.0

    @classmethod
    def for_endpoint(cls, project, name: str, env: dict[str, str] | None = None
                     ) -> ReceiverSettings:
        from mlc.runtime.prediction_log import resolve_uri

        env = dict(os.environ if env is None else env)
        e = project.endpoints.get(name)
        if e is None or e.engine_serving is None or e.engine_serving.payload_log is None:
            raise SystemExit(f"error: `{name}` is not an endpoint whose payloads are logged "
                             f"in project `{project.name}`")
        model = project.models[e.model]
        return cls(
            endpoint=e.name, protocol=e.engine_serving.payload_log.protocol, task=model.task,
            features=[f.field for f in model.features],
            entity_keys={x.join_key: x.type for x in project.entities.values()
                         if x.join_key in model.entity_keys},
            log_uri=resolve_uri(e.prediction_log_uri), sample=e.prediction_log_sample,
            model_uri=env.get("MLC_MODEL_URI") or e.model_uri,
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or project.platform.mlflow_tracking_uri,
            max_body_bytes=int(env.get("MLC_MAX_BODY_BYTES", 1 << 20)),
            body_timeout_seconds=float(env.get("MLC_BODY_TIMEOUT_SECONDS",
                                               DEFAULT_BODY_TIMEOUT)),
            max_pending=int(env.get("MLC_PAYLOAD_LOG_MAX_PENDING", 1000)),
            max_pending_bytes=int(env.get("MLC_PAYLOAD_LOG_MAX_PENDING_BYTES", 64 << 20)),
            pending_seconds=float(env.get("MLC_PAYLOAD_LOG_PENDING_SECONDS", 30.0)),
            max_inflight=int(env.get("MLC_PAYLOAD_LOG_MAX_INFLIGHT", 64)),
            drain_seconds=float(env.get("MLC_DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS)),
            shutdown_timeout_seconds=int(env.get("MLC_SHUTDOWN_TIMEOUT_SECONDS",
                                                 DEFAULT_SHUTDOWN_TIMEOUT)),
            flush_rows=int(env.get("MLC_PREDICTION_LOG_FLUSH_ROWS", 10_000)),
            flush_seconds=float(env.get("MLC_PREDICTION_LOG_FLUSH_SECONDS", 30.0)))


class ModelVersion:
    """The registry version the endpoint's model URI names, kept fresh in a thread."""

    def __init__(self, model_uri: str, tracking_uri: str):
        from ..serve.loader import parse_model_uri

        self.model_uri, self.tracking_uri = model_uri, tracking_uri
        _, alias, version = parse_model_uri(model_uri)
        self.value: str | None = version  # a pinned version needs no registry
        self.alias = alias
        self.errors = 0
        self._stop = threading.Event()

    def start(self) -> None:
        if self.alias is not None:
            threading.Thread(target=self._run, name="model-version", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> None:
        from ..serve.loader import resolve_version

        try:
            self.value = resolve_version(self.model_uri, self.tracking_uri)[1]
        except Exception as exc:  # the registry down: keep the last version, retry
            self.errors += 1
            log.warning("cannot resolve %s: %s", self.model_uri, exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(MODEL_VERSION_REFRESH_SECONDS if self.value else 2.0)


class Counts:
    def __init__(self, app: ReceiverApp):
        self.app = app
        self.received = {"request": 0, "response": 0}
        self.paired = 0
        self.rows = 0  # rows kept by the sample and handed to the writer
        self.undecodable = dict.fromkeys(REASONS, 0)
        self.rejections = admission.Rejections()

    def describe(self):
        return []

    def collect(self) -> Iterator:
        app, e = self.app, self.app.settings.endpoint
        received = CounterMetricFamily("mlc_payload_log_events", "CloudEvents received, by "
                                       "type", labels=["endpoint", "type"])
        for kind, n in sorted(self.received.items()):
            received.add_metric([e, kind], n)
        yield received
        undecodable = CounterMetricFamily("mlc_payload_log_undecodable", "events and pairs "
                                          "skipped, by reason", labels=["endpoint", "reason"])
        for reason, n in sorted(self.undecodable.items()):
            undecodable.add_metric([e, reason], n)
        yield undecodable
        for name, what, n in (
                ("paired", "requests paired with their response", self.paired),
                ("expired", "halves dropped unpaired (timeout or memory bound)",
                 app.pairing.expired),
                ("duplicates", "halves received again", app.pairing.duplicates),
                ("rows", "rows sampled into the prediction log", self.rows),
                ("write_errors", "failed writes of the prediction log", app.writer.errors
                 if app.writer else 0),
                ("version_errors", "failed reads of the model version", app.version.errors)):
            c = CounterMetricFamily(f"mlc_payload_log_{name}", what, labels=["endpoint"])
            c.add_metric([e], n)
            yield c
        pending = GaugeMetricFamily("mlc_payload_log_pending", "halves waiting for their "
                                    "other half", labels=["endpoint"])
        pending.add_metric([e], app.pairing.pending)
        yield pending
        yield from self.rejections.families(e, VARIANT)


class ReceiverApp:
    def __init__(self, settings: ReceiverSettings, *, seed: int | None = None):
        self.settings = s = settings
        self.pairing = Pairing(s.max_pending, s.pending_seconds, s.max_pending_bytes)
        self.version = ModelVersion(s.model_uri, s.tracking_uri)
        self.counts = Counts(self)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.counts)
        self.writer = None
        self._seed = seed
        self.draining = False
        self.inflight = 0
        self._decode_request = decode.REQUEST[s.protocol]
        self._decode_response = decode.RESPONSE[s.protocol]

    def begin_drain(self) -> None:
        self.draining = True

    def start(self) -> None:
        from mlc.runtime.prediction_log import PredictionLogWriter

        s = self.settings
        self.writer = PredictionLogWriter(s.log_uri, s.features, s.sample,
                                          flush_rows=s.flush_rows,
                                          flush_seconds=s.flush_seconds, seed=self._seed,
                                          entity_keys=s.entity_keys)
        self.version.start()

    def close(self) -> None:
        self.version.stop()
        if self.writer is not None:
            self.writer.close()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == LIVE_PATH:
            return await _send(send, 200, {"live": True})
        if path == READY_PATH:
            ready = not self.draining and self.version.value is not None
            return await _send(send, 200 if ready else 503, {"ready": ready})
        if path == METRICS_PATH:
            return await _send(send, 200, generate_latest(self.registry),
                               kind=CONTENT_TYPE_LATEST.encode())
        if scope["method"] != "POST":
            return await _send(send, 405, {"error": "POST CloudEvents here"})
        if self.inflight >= self.settings.max_inflight:
            self.counts.rejections.count("overload")
            return await _send(send, 503, {"error": "overloaded"}, [
                (b"retry-after", str(self.settings.retry_after_seconds).encode()),
                (b"connection", b"close")])
        self.inflight += 1
        try:
            await self._event(scope, receive, send)
        finally:
            self.inflight -= 1

    async def over_connection_limit(self, scope, receive, send) -> None:
        self.counts.rejections.count("connections")
        await _send(send, 503, {"error": "over the connection limit"},
                    [(b"connection", b"close")])

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.to_thread(self.start)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.begin_drain()
                await asyncio.to_thread(self.close)  # the last rows written before exit
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _event(self, scope, receive, send) -> None:
        s = self.settings
        try:
            body = await read_body(scope["headers"], receive, s.max_body_bytes,
                                   s.body_timeout_seconds)
        except Disconnected:
            return
        except BodyTimeout:
            self.counts.rejections.count("body_timeout")
            return await _send(send, 408, {"error": "the body did not arrive in time"},
                               [(b"connection", b"close")])
        if body is None:
            self.counts.undecodable["too_large"] += 1
            return await _send(send, 413, {"error": f"the body is over {s.max_body_bytes} "
                                           "bytes"})
        self.receive_event(scope["headers"], body)
        await _send(send, 200, {"received": True})

    def receive_event(self, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
        """Count, pair and log one event; the rows it logged (never raises for bad input)."""
        try:
            event = cloudevents.parse(headers, body)
        except cloudevents.NotAnEvent as exc:
            self.counts.undecodable[exc.reason] += 1
            return 0
        self.counts.received[event.kind] += 1
        pair = self.pairing.add(event)
        if pair is None:
            return 0
        self.counts.paired += 1
        try:
            return self._log(pair)
        except decode.Undecodable as exc:
            self.counts.undecodable[exc.reason] += 1
            log.debug("pair %s skipped: %s", event.id, exc)
            return 0

    def _log(self, pair: Pair) -> int:
        s = self.settings
        rows, request = self._decode_request(pair.request.body, s.features)
        predictions = self._decode_response(pair.response.body, len(rows), s.task)
        version = self.version.value
        if version is None:
            raise decode.Undecodable("no_model_version", "the model version is not known yet")
        kept = self.writer.log(rows, predictions, version, request_id=pair.request.id,
                               request=request or None)
        self.counts.rows += kept
        return kept


def _body(doc) -> bytes:
    return json.dumps(doc).encode() if not isinstance(doc, bytes) else doc


async def _send(send, status: int, doc, headers=(), kind: bytes = b"application/json"
                ) -> None:
    await send_response(send, status, _body(doc), [(b"content-type", kind), *headers])


def main(argv: list[str]) -> int:
    import argparse

    from mlc.compiler import ir

    from ..serve.uvicorn_server import make_server

    parser = argparse.ArgumentParser(prog="python -m mlc.runtime payload-log",
                                     description="Receive KServe's payload logger's "
                                     "CloudEvents and write an engine endpoint's prediction "
                                     "log.")
    parser.add_argument("--project", required=True, type=Path, help="project.json (the IR)")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    project = ir.ResolvedProject.model_validate_json(args.project.read_text("utf-8"))
    app = ReceiverApp(ReceiverSettings.for_endpoint(project, args.endpoint))
    started = time.monotonic()
    make_server(app, args.host, args.port).run()
    log.info("stopped after %.0fs: %s", time.monotonic() - started,
             {"paired": app.counts.paired, "rows": app.counts.rows})
    return 0
