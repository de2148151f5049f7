"""The model server: Open Inference Protocol v2 and a plain JSON `/predict`, on uvicorn.

    GET  /v2/health/live            200 while the process runs
    GET  /v2/health/ready           200 once the model is loaded and warm; 503 before, and
                                    from the first SIGTERM on (so traffic moves away)
    GET  /v2 | /v2/models/{name}    server and model metadata (inputs, outputs, versions)
    GET  /v2/models/{name}/ready
    POST /v2/models/{name}[/versions/{v}]/infer    OIP v2 inference
    POST /predict                   {"instances": [{feature: value}, ...]} -> {"predictions"}
    GET  /metrics                   Prometheus text (mlc/metrics.py's serving metrics)

A raw ASGI app, not a framework: every request passes one `if` chain, one JSON parse, a
vectorised check (validation.py) and a future that the batcher (batching.py) resolves, so
the server adds little to the model's own cost. The model loads in the background after
the socket opens: liveness answers at once, readiness waits for the model.

Every answer carries the request's id (`x-request-id`, the client's or a new one), which is
logged beside its predictions. A primary with a shadow hands a copy of a sampled share of
its answered requests to its mirror sender process (shadow.py) after answering, without
waiting.

On SIGTERM: readiness turns false, the server keeps answering for `drain_seconds` (time for
the load balancer to notice), then stops accepting connections, finishes every request in
flight, empties the batch queue, flushes the prediction log and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np

from mlc import metrics as contract

from . import admission, request_id
from . import explain as explaining
from .batching import Batcher, Closed, Expired, Overloaded
from .body import BodyTimeout, Disconnected, read_body, send_response
from .config_reload import MirrorReloader
from .connections import ARRIVED
from .metrics import CONTENT_TYPE, ServeMetrics
from .settings import MirrorSettings, ServeSettings, settings_for_endpoint
from .shadow import ShadowMirror, ShadowStats, replace_mirror
from .uvicorn_server import make_server
from .validation import RequestError, Signature

__all__ = ["ServeApp", "ServeSettings", "main", "make_server", "settings_for_endpoint"]

try:
    import orjson

    def dumps(doc) -> bytes:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)

    loads = orjson.loads
except ImportError:  # the image installs orjson; a bare environment still works
    import json

    def dumps(doc) -> bytes:
        return json.dumps(doc, default=lambda o: o.tolist()).encode()

    loads = json.loads

log = logging.getLogger("mlc.serve")
PREDICT_ROUTE = contract.PREDICT_ROUTE
INFER_ROUTE = contract.INFER_ROUTE
# A model call faster than this runs on the event loop: handing it to a thread and back
# costs about as much, and the loop stalls for at most this long per batch.
INLINE_BELOW = 0.001
# How much one request moves the estimate of the event loop's lag (ServeApp.loop_lag).
LAG_WEIGHT = 0.05
JSON = [(b"content-type", b"application/json")]


class ServeApp:
    def __init__(self, settings: ServeSettings, loader=None):
        self.settings = settings
        self._loader = loader  # () -> LoadedModel; default: the MLflow registry
        self.model = None
        self.signature: Signature | None = None
        self.version = ""
        self.ready = False
        self.draining = False
        self.load_error: str | None = None
        self.inflight = 0
        self.reading = 0  # requests whose rows are not queued yet (the batcher waits for them)
        self.online = None
        self.prediction_log = None
        self.batcher = Batcher(self._run_batch, max_batch_size=settings.max_batch_size,
                               max_latency=settings.max_latency, max_queue=settings.max_queue,
                               expecting=lambda: self.reading,
                               inline=settings.model_thread is False,
                               max_wait=settings.latency_slo_seconds)
        self.metrics = ServeMetrics(settings.endpoint, [], settings.max_queue,
                                    inflight=lambda: self.inflight,
                                    queue_depth=lambda: self.batcher.queued,
                                    variant=settings.variant)
        mirror = settings.mirror
        self.shadow_stats = (ShadowStats(settings.endpoint, mirror.task, mirror.tolerance,
                                         mirroring=settings.role == "primary")
                             if mirror else ShadowStats(settings.endpoint))
        self.metrics.registry.register(self.shadow_stats)
        self.mirror = (ShadowMirror(settings.mirror, self.shadow_stats)
                       if settings.mirror is not None and settings.role == "primary" else None)
        # a primary follows its mounted config's mirror section (a shadow phase added after
        # it started); nothing else of the config is reloaded
        self.reloader = (MirrorReloader(settings.config_path, settings.mirror, self._set_mirror,
                                        self.metrics.config_reloads,
                                        settings.config_reload_seconds)
                         if settings.config_path is not None and settings.role == "primary"
                         else None)
        self._reload_task: asyncio.Task | None = None
        # copies go to the shadow's route for the same body, by a name every server answers to
        model = settings.model_names[0] if settings.model_names else settings.endpoint
        self._mirror_paths = {PREDICT_ROUTE: PREDICT_ROUTE.encode(),
                              INFER_ROUTE: INFER_ROUTE.format(name=model).encode()}
        self._names = {settings.endpoint, *settings.model_names}
        # the inference paths refused in the protocol layer under overload (refuse_early);
        # any other spelling of them takes the ordinary path, and is refused there
        self._early_routes = {PREDICT_ROUTE.encode(): PREDICT_ROUTE, **{
            INFER_ROUTE.format(name=n).encode(): INFER_ROUTE for n in sorted(self._names)}}
        self._retry = [(b"retry-after", str(settings.retry_after_seconds).encode())]
        # overload refusals past this rate are parked and answered at it (admission.py)
        self.refusal_limit = admission.RefusalLimit(settings.refusal_rate,
                                                    self.batcher.retry_after)
        # recent seconds from a request's first bytes to its handler's start (a moving
        # mean): what a request refused in the protocol would have waited for the event loop
        self.loop_lag = 0.0
        self._retry_and_close = [*self._retry, (b"connection", b"close")]
        self._load_task: asyncio.Task | None = None
        self.model_process = None  # model_process.ModelProcess, when the model runs in one
        self.explainer: explaining.Explainer | None = None  # with `explain:`, once loaded
        self.explain_unavailable = "the endpoint has no `explain:` in ml.yaml"

    # --- model -----------------------------------------------------------------------------
    def _load(self) -> dict:
        """In a worker thread: the model and everything built around it (blocking work)."""
        s = self.settings
        process = None
        # /explain's background comes from the model's reference sample
        reference = EXPLAIN_REFERENCE_ROWS if s.explain is not None else 0
        if self._loader is not None:
            model = self._loader()
        elif s.model_process:
            from .model_process import ModelProcess

            process = ModelProcess(s.model_uri, s.tracking_uri, s.allow_pickle or None,
                                   reference_rows=reference)
            model = process.start()
        else:
            from .loader import load

            model = load(s.model_uri, s.tracking_uri, allow_pickle=s.allow_pickle or None,
                         reference_rows=reference)
        try:
            return self._parts(model, process)
        except BaseException:
            if process is not None:  # the next try starts another
                process.close()
            raise

    def _parts(self, model, process) -> dict:
        """What is built around a loaded model (blocking work too)."""
        s = self.settings
        declared = [f for f in s.feature_types if f not in model.features]
        if declared:
            log.warning("the model does not take %s, which ml.yaml lists; serving the "
                        "model's own inputs", ", ".join(declared))
        parts = {"model": model, "online": None, "log": None, "process": process,
                 "explainer": None, "explain_unavailable": self.explain_unavailable,
                 "inline": (not s.model_thread if s.model_thread is not None
                            else _call_seconds(model, s.max_batch_size) < INLINE_BELOW)}
        if s.online_features:
            from .features import OnlineFeatures

            repo, service, keys = s.online_features
            parts["online"] = OnlineFeatures(repo, service, keys, model.features)
        if s.prediction_log_uri and s.prediction_log_sample > 0:
            from mlc.runtime.prediction_log import PredictionLogWriter

            parts["log"] = PredictionLogWriter(s.prediction_log_uri, model.features,
                                               s.prediction_log_sample,
                                               # the A/B arm; empty for other servers
                                               variant=s.variant if s.role == "variant" else None,
                                               entity_keys=s.entity_keys)
        if s.explain is not None:
            parts["explainer"], parts["explain_unavailable"] = _explainer(model, s.explain)
        return parts

    async def _load_until_ready(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.5
        while not self.draining:
            try:
                self._install(await loop.run_in_executor(None, self._load))
                return
            except Exception as exc:  # registry down, alias not set yet: keep trying
                self.load_error = str(exc)
                log.error("model not loaded (retrying in %.1fs): %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.load_retry_max_seconds)

    def _install(self, parts: dict) -> None:
        s, model = self.settings, parts["model"]
        types = {f: s.feature_types.get(f, "float64") for f in model.features}
        self.signature = Signature.build(model.features, types, max_rows=s.max_queue)
        self.online = parts["online"]
        # logged per request (in _infer), not per model call: a row's request id is known
        # only there
        self.prediction_log = parts["log"]
        self.model_process = parts.get("process")
        self.explainer = parts.get("explainer")
        self.explain_unavailable = parts.get("explain_unavailable")
        self.metrics.set_features(model.features)
        self.metrics.set_model(model.name, model.version, model.alias, model.trained_at)
        self.batcher.inline = parts["inline"]
        self.model, self.version = model, model.version
        self.load_error = None
        self.ready = self.metrics.ready = True
        log.info("serving %s version %s (%d features; model calls %s)", model.name,
                 model.version, len(model.features),
                 "on the event loop" if self.batcher.inline else "in a thread")

    def _run_batch(self, rows: np.ndarray) -> np.ndarray:
        """Predict; the metrics (and, through them, the prediction log) see the call later,
        in their own thread."""
        model = self.model
        predictions = model.predict(rows)
        self.metrics.observe_batch(model.version, rows, predictions)
        return predictions

    async def _set_mirror(self, mirror: MirrorSettings | None) -> None:
        self.mirror = await replace_mirror(self.mirror, mirror, self.shadow_stats)

    # --- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.batcher.start()
                if self.mirror is not None:
                    await self.mirror.start()
                self._load_task = asyncio.get_running_loop().create_task(
                    self._load_until_ready())
                if self.reloader is not None:
                    self._reload_task = asyncio.get_running_loop().create_task(
                        self.reloader.run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def begin_drain(self) -> None:
        """Readiness turns false; requests are still answered (see make_server)."""
        self.draining, self.ready, self.metrics.ready = True, False, False

    async def shutdown(self) -> None:
        self.begin_drain()
        self.refusal_limit.close()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self._reload_task is not None:  # a change under way finishes first
            self.reloader.stop()
            await self._reload_task
        await self.batcher.close()
        if self.mirror is not None:
            await self.mirror.close()
        loop = asyncio.get_running_loop()
        if self.model_process is not None:  # the queue is empty: no call needs it any more
            await loop.run_in_executor(None, self.model_process.close)
        await loop.run_in_executor(None, self.metrics.close)  # counts and logs the last calls
        if self.prediction_log is not None:
            await loop.run_in_executor(None, self.prediction_log.close)

    async def _http(self, scope, receive, send) -> None:
        path, method = scope["path"], scope["method"]
        if path == PREDICT_ROUTE:
            return await self._infer(scope, receive, send, PREDICT_ROUTE, oip=False)
        if path == explaining.ROUTE and self.settings.explain is not None:
            return await self._explain(scope, receive, send)
        if path.startswith("/v2/models/"):
            parts = path[len("/v2/models/"):].split("/")
            name = parts[0]
            if name not in self._names:
                return await self._not_found(send, {"error": f"no model named `{name}` here"})
            tail = parts[1:]
            if len(tail) >= 2 and tail[0] == "versions":
                if self.model is not None and tail[1] != self.version:
                    return await self._not_found(send, {"error": f"version {tail[1]} is not "
                                                          f"served (serving {self.version})"})
                tail = tail[2:]
            if tail == ["infer"]:
                return await self._infer(scope, receive, send, INFER_ROUTE, oip=True)
            if tail == ["ready"]:
                return await self._ready(send)
            if tail in ([], [""]):
                return await self._model_metadata(send, name)
            return await self._not_found(send, {"error": f"no route {path}"})
        if path == "/v2/health/live":
            if self.model_process is not None and not self.model_process.alive():
                # every call would fail: a restart is the cure
                return await _send(send, 503, {"live": False,
                                               "reason": "the model process exited"})
            return await _send(send, 200, {"live": True})
        if path == "/v2/health/ready":
            return await self._ready(send)
        if path == "/metrics":
            return await _send_raw(send, 200, self.metrics.render(),
                                   [(b"content-type", CONTENT_TYPE.encode())])
        if path in ("/v2", "/v2/"):
            return await _send(send, 200, {"name": "mlc", "version": _version(),
                                           "extensions": []})
        return await self._not_found(send, {"error": f"no route {method} {path}"})

    async def _not_found(self, send, doc: dict) -> None:
        """A 404, counted (under one route label, whatever the path: no unbounded labels)."""
        start = time.perf_counter()
        await _send(send, 404, doc)
        self.metrics.observe_request(self.version, contract.UNMATCHED_ROUTE, 404,
                                     time.perf_counter() - start)

    async def _ready(self, send) -> None:
        if self.ready and not self.draining:
            return await _send(send, 200, {"ready": True})
        reason = ("shutting down" if self.draining else
                  f"model not loaded: {self.load_error}" if self.load_error
                  else "model loading")
        await _send(send, 503, {"ready": False, "reason": reason})

    async def _model_metadata(self, send, name: str) -> None:
        if self.signature is None:
            return await _send(send, 503, {"error": "model loading"}, self._retry)
        sig, model = self.signature, self.model
        shape = [-1, model.output_width] if model.output_width > 1 else [-1]
        await _send(send, 200, {
            "name": name, "versions": [self.version], "platform": "pytorch",
            "inputs": [{"name": n, "datatype": sig.oip_datatype(i), "shape": [-1]}
                       for i, n in enumerate(sig.names)],
            "outputs": [{"name": "prediction", "datatype": "FP64", "shape": shape}]})

    async def _infer(self, scope, receive, send, route: str, *, oip: bool) -> None:
        # from the moment the request's first bytes were read (connections.py): the time it
        # waited for the event loop counts towards its latency and its deadline
        start = scope.get(ARRIVED) or time.perf_counter()
        self.loop_lag += LAG_WEIGHT * (time.perf_counter() - start - self.loop_lag)
        self.inflight += 1
        self.reading += 1
        reading = True
        version = self.version
        rid = request_id.from_headers(scope["headers"])
        status, body, headers = 200, None, None
        raw = predictions = None
        try:
            if scope["method"] != "POST":
                raise RequestError(f"{route} takes POST", 405)
            # Draining still answers: readiness is false, but the load balancer may send a
            # few more requests before it notices; the batcher refuses once it is closed.
            if self.model is None:
                status, headers = 503, self._retry
                body = {"error": "model not loaded yet"}
            else:
                # Admission before a byte of the body is read: when even one row would wait
                # past the SLO behind what is queued and on its way, reading and parsing
                # the body only delays the 503 that is coming anyway.
                refused = self.batcher.refusal(1, ahead=self.reading - 1,
                                               waited=time.perf_counter() - start)
                if refused is not None:
                    raise Overloaded(refused)
                raw = await self._read_body(scope, receive)
                try:
                    doc = loads(raw)
                except ValueError as exc:
                    raise RequestError(f"the body is not valid JSON: {exc}") from None
                rows = await self._rows(doc, oip)
                self.reading -= 1
                reading = False
                predictions = await self.batcher.submit(rows, arrived=start)
                if self.prediction_log is not None:
                    self.prediction_log.log(rows, predictions, version, request_id=rid,
                                            request=None if oip else doc)
                body = _answer(doc, predictions, self.settings.endpoint, version, oip)
        except RequestError as exc:
            status, body = exc.status, {"error": exc.message}
        except Overloaded as exc:
            # closed, as refuse_early's answers are: a client that ignores Retry-After
            # comes back through the accept queue, not at once on this connection
            status, headers = 503, self._overload_headers()
            body = {"error": f"overloaded: {exc.reason}"}
            self.metrics.observe_rejected("overload")
        except Expired:
            status, headers = 503, self._overload_headers()
            body = {"error": f"overloaded: the latency SLO "
                             f"({self.settings.latency_slo_seconds:g}s) passed before the "
                             f"model reached the request"}
            self.metrics.observe_rejected("deadline")
        except Closed:
            status, headers, body = 503, self._retry, {"error": "shutting down"}
        except BodyTimeout:
            # the rest of the body may still trickle in: the connection cannot be reused
            status, headers = 408, [(b"connection", b"close")]
            body = {"error": f"the body did not arrive within "
                             f"{self.settings.body_timeout_seconds:g}s"}
            self.metrics.observe_rejected("body_timeout")
        except Disconnected:
            status, body = 499, None
        except Exception as exc:
            log.exception("inference failed")
            status, body = 500, {"error": f"inference failed: {type(exc).__name__}"}
        finally:
            if reading:
                self.reading -= 1
        answer = b""
        try:
            if body is not None:
                ids = [(request_id.HEADER_BYTES, rid.encode())]
                answer = dumps(body)
                await _send_raw(send, status, answer,
                                JSON + (ids + headers if headers else ids))
        finally:
            self.inflight -= 1
            self.metrics.observe_request(version, route, status, time.perf_counter() - start)
        if status == 200 and self.mirror is not None:
            # the answer as sent: the mirror sender compares it with the shadow's
            self.mirror.offer(rid, self._mirror_paths[route], raw, answer)

    async def _explain(self, scope, receive, send) -> None:
        """POST /explain (explain.py): SHAP values of the request's rows, one explanation
        at a time, in a worker thread; counted apart from the prediction routes."""
        start = time.perf_counter()
        status, headers = 200, None
        try:
            if scope["method"] != "POST":
                raise RequestError(f"{explaining.ROUTE} takes POST", 405)
            if self.model is None:
                status, headers = 503, self._retry
                body = {"error": "model not loaded yet"}
            elif self.explainer is None:
                status, body = 501, {"error": f"no explanations: {self.explain_unavailable}"}
            else:
                raw = await self._read_body(scope, receive)
                try:
                    doc = loads(raw)
                except ValueError as exc:
                    raise RequestError(f"the body is not valid JSON: {exc}") from None
                rows = self.signature.rows_from_predict(doc)
                limit = self.settings.explain.max_rows
                if len(rows) > limit:
                    raise RequestError(f"{len(rows)} rows to explain; this endpoint explains "
                                       f"at most {limit} per request (`explain.maxRows`)")
                explainer, model = self.explainer, self.model
                try:
                    found = await asyncio.get_running_loop().run_in_executor(
                        None, explainer.try_explain, rows)
                except explaining.ExplainBusy:
                    status, headers = 503, self._retry
                    body = {"error": "another explanation is running; retry later"}
                else:
                    body = {"model_name": model.name, "model_version": model.version,
                            "outputs": explainer.outputs, "explanations": found}
        except RequestError as exc:
            status, body = exc.status, {"error": exc.message}
        except Disconnected:
            status, body = 499, None
        except BodyTimeout:
            status, headers = 408, [(b"connection", b"close")]
            body = {"error": f"the body did not arrive within "
                             f"{self.settings.body_timeout_seconds:g}s"}
        except Exception as exc:
            log.exception("explanation failed")
            status, body = 500, {"error": f"explanation failed: {type(exc).__name__}"}
        try:
            if body is not None:
                await _send_raw(send, status, dumps(body), JSON + (headers or []))
        finally:
            self.metrics.observe_explain(status, time.perf_counter() - start)

    async def _rows(self, doc, oip: bool) -> np.ndarray:
        if self.online is not None and not oip:
            entity_rows = self.online.entity_rows(doc)
            return await asyncio.get_running_loop().run_in_executor(
                None, self.online.lookup, entity_rows)
        return self.signature.rows_from_oip(doc) if oip else self.signature.rows_from_predict(
            doc)

    async def _read_body(self, scope, receive) -> bytes:
        limit = self.settings.max_body_bytes
        body = await read_body(scope["headers"], receive, limit,
                               self.settings.body_timeout_seconds)
        if body is None:
            raise RequestError(f"the body is over {limit} bytes", 413)
        return body

    def refuse_early(self, data: bytes) -> bytes | admission.Park | None:
        """The answer to an inference request at the start of `data` that the batcher would
        refuse anyway, or None: called by the protocol before the request is parsed
        (admission.py says why), and counted like the refusal `_infer` makes. Past the
        refusal rate, `admission.PARK`: the protocol parks the connection with
        `refusal_limit`, which answers it later, minimally."""
        if self.model is None:
            return None
        request = admission.early_request(data)
        if request is None:
            return None
        route = self._early_routes.get(request[0])
        if route is None:
            return None
        # the wait for the loop counts, as the handler will count it: refused here, not
        # after uvicorn has parsed the request and the app has started on it
        reason = self.batcher.refusal(1, ahead=self.reading, waited=self.loop_lag)
        if reason is None:
            return None
        if not self.refusal_limit.take():
            self._count_refusal("refusal_limit", route)
            return admission.PARK
        self._count_refusal("overload", route)
        return admission.answer(503, {"error": f"overloaded: {reason}"},
                                admission.request_id_in(request[1]),
                                self.batcher.retry_after())

    def _count_refusal(self, reason: str, route: str) -> None:
        """A refusal made in the protocol layer: by reason, and under code 503 of its route.
        Its duration is 0: it never reached the app."""
        self.metrics.observe_rejected(reason)
        self.metrics.observe_request(self.version, route, 503, 0.0)

    def _overload_headers(self) -> list[tuple[bytes, bytes]]:
        """Retry-After from the time the work at hand takes to drain, and a close: a client
        that ignores Retry-After comes back through the accept queue."""
        return [(b"retry-after", b"%d" % self.batcher.retry_after()), (b"connection", b"close")]

    async def over_connection_limit(self, scope, receive, send) -> None:
        """What the HTTP layer runs instead of the app past the connection limit
        (connections.py): a 503 like uvicorn's own, but with Retry-After and counted, under
        its route when it was for an inference route."""
        start = time.perf_counter()
        self.metrics.observe_rejected("connections")
        await _send(send, 503, {"error": "over the connection limit"}, self._retry_and_close)
        route = _served_route(scope.get("path", ""))
        if route is not None:
            self.metrics.observe_request(self.version, route, 503, time.perf_counter() - start)


# Rows of the reference sample the loader keeps for /explain's background (its `background`
# rows are drawn from them, seeded).
EXPLAIN_REFERENCE_ROWS = 2000


def _explainer(model, settings: explaining.ExplainSettings
               ) -> tuple[explaining.Explainer | None, str | None]:
    """/explain's explainer for a loaded model, warmed with one explanation (blocking); or
    None and why it cannot explain."""
    spec = model.spec or {}
    background = explaining.background_rows(model.reference, spec.get("fill"),
                                            settings.background, settings.seed)
    if background is None:
        reason = ("the model has no reference sample and no training means to explain it "
                  "against (it is not in mlc's model format)")
        log.warning("POST /explain answers 501: %s", reason)
        return None, reason
    outputs = explaining.output_names(model.task, model.output_width, spec.get("classes"))
    explainer = explaining.Explainer(model.predict, list(model.features), background,
                                     settings, outputs)
    explainer.explain(background[:1])  # the first explanation builds what the next reuse
    return explainer, None


def _served_route(path: str) -> str | None:
    """The inference route label of `path`, or None for every other path."""
    if path == PREDICT_ROUTE:
        return PREDICT_ROUTE
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return INFER_ROUTE
    return None


def _call_seconds(model, rows: int) -> float:
    """The median time of a full-batch model call (after the loader's warm-up call)."""
    batch = np.zeros((rows, len(model.features)))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        model.predict(batch)
        times.append(time.perf_counter() - start)
    return sorted(times)[2]


def _answer(doc, predictions: np.ndarray, endpoint: str, version: str, oip: bool) -> dict:
    if not oip:
        return {"predictions": predictions, "model_version": version}
    answer = {"model_name": endpoint, "model_version": version,
              "outputs": [{"name": "prediction", "datatype": "FP64",
                           "shape": list(predictions.shape), "data": predictions.ravel()}]}
    if isinstance(doc, dict) and "id" in doc:
        answer["id"] = doc["id"]
    return answer


async def _send(send, status: int, doc, headers=None) -> None:
    await _send_raw(send, status, dumps(doc), JSON + headers if headers else JSON)


async def _send_raw(send, status: int, body: bytes, headers) -> None:
    await send_response(send, status, body, list(headers))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlc")
    except PackageNotFoundError:
        return "0"


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlc.runtime serve",
                                     description="Serve an endpoint's model over HTTP.")
    parser.add_argument("--project", required=True, type=Path, help="project.json (the IR)")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=None,
                        help="default: the endpoint's port (8080)")
    args = parser.parse_args(argv)
    from mlc.compiler import ir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    project = ir.ResolvedProject.model_validate_json(args.project.read_text("utf-8"))
    settings = settings_for_endpoint(project, args.endpoint)
    port = args.port or project.endpoints[args.endpoint].port
    make_server(ServeApp(settings), args.host, port).run()
    return 0
