"""The A/B router: assigns each request to a variant by exact weights, and forwards it there.

Spreading clients over the variants' pods (one Service over all of them) splits traffic by
pod count, not by weight, and sends one user to both arms. The router instead hashes a
sticky key into the weights: the header or the entity field that ml.yaml names in
`rollout.assignment`, so one key always lands on one variant; a request without the key is
assigned at random, by the same weights. It forwards the request unchanged to the variant's
own Service and returns that answer, with the variant in `x-mlc-variant` and the request
id (the client's, or a new one) in `x-request-id`.

    GET  /v2/health/live | /v2/health/ready    the router's own health
    GET  /metrics                              mlc_router_* metrics, by variant
    *    anything else                         forwarded to the assigned variant

The settings are the router's key of the endpoint's ConfigMap (MLC_ENDPOINT_CONFIG): the
variants with their weights and addresses, and the assignment key; with A/B guardrails, the
override file whose stopped variants get no traffic (weights_override.py).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from mlc import metrics as contract

from . import admission, request_id, weights_override
from .body import BodyTimeout, Disconnected, read_body, send_response
from .metrics import Histogram, family, label_values
from .settings import DEFAULT_BODY_TIMEOUT, DEFAULT_DRAIN_SECONDS, DEFAULT_SHUTDOWN_TIMEOUT

log = logging.getLogger("mlc.serve.router")

VARIANT_HEADER = "x-mlc-variant"
# Weights are percents; keys hash into this many slots, so that any split of 100 is exact.
SLOTS = 10_000
CONNECTIONS_PER_VARIANT = 64
FORWARDED_HEADERS = frozenset({b"content-type", b"accept", b"traceparent", b"tracestate"})
LIVE_PATH, READY_PATH, METRICS_PATH = "/v2/health/live", "/v2/health/ready", "/metrics"
OWN_PATHS = frozenset(p.encode() for p in (LIVE_PATH, READY_PATH, METRICS_PATH))
# the `variant` label of the router's own refusals (mlc_rejected_requests_total)
ROUTER_VARIANT = "router"


@dataclass(frozen=True)
class RouterVariant:
    name: str
    weight: int  # percent
    url: str


@dataclass(frozen=True)
class RouterSettings:
    endpoint: str
    variants: tuple[RouterVariant, ...]
    header: str | None  # the sticky key is this header's value...
    field: str | None  # ...or this entity field of the request body
    timeout_seconds: float
    max_body_bytes: int = 1 << 20
    # the server's bounds (settings.py), from the same environment variables
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    shutdown_timeout_seconds: int = DEFAULT_SHUTDOWN_TIMEOUT
    # forwards in flight at once: past it a request is refused (503) before its body is
    # read, rather than queued in the variants' connection pools past its timeout
    max_inflight: int = CONNECTIONS_PER_VARIANT
    retry_after_seconds: int = 1
    guard: weights_override.GuardSettings | None = None  # the A/B guard's override

    @classmethod
    def from_config(cls, doc: dict, env: dict[str, str] | None = None) -> RouterSettings:
        env = dict(os.environ if env is None else env)
        assignment = doc.get("assignment") or {}
        variants = tuple(RouterVariant(v["name"], int(v["weight"]), v["url"].rstrip("/"))
                         for v in doc["variants"])
        if sum(v.weight for v in variants) != 100:
            raise SystemExit(f"error: the router's variant weights add up to "
                             f"{sum(v.weight for v in variants)}, not 100")
        header = assignment.get("header")
        return cls(endpoint=doc["endpoint"], variants=variants,
                   header=header.lower() if header else None, field=assignment.get("field"),
                   timeout_seconds=float(doc["timeout_seconds"]),
                   max_body_bytes=int(env.get("MLC_MAX_BODY_BYTES", 1 << 20)),
                   body_timeout_seconds=float(env.get("MLC_BODY_TIMEOUT_SECONDS",
                                                      DEFAULT_BODY_TIMEOUT)),
                   drain_seconds=float(env.get("MLC_DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS)),
                   shutdown_timeout_seconds=int(env.get("MLC_SHUTDOWN_TIMEOUT_SECONDS",
                                                        DEFAULT_SHUTDOWN_TIMEOUT)),
                   max_inflight=int(env.get("MLC_ROUTER_MAX_INFLIGHT",
                                            CONNECTIONS_PER_VARIANT * len(variants))),
                   guard=weights_override.GuardSettings.from_config(doc.get("guard")))


class Assigner:
    """Key -> variant by the weights: the key's hash picks one of SLOTS slots, and variant i
    owns a run of slots in proportion to its weight (variants with weight 0 own none)."""

    def __init__(self, variants: tuple[RouterVariant, ...], seed: int | None = None):
        self.variants = [v for v in variants if v.weight > 0]
        self._ends, total = [], 0
        for v in self.variants:
            total += v.weight * SLOTS // 100
            self._ends.append(total)
        self._random = random.Random(seed)

    def slot(self, key: str | None) -> int:
        if key is None:
            return self._random.randrange(SLOTS)
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % SLOTS

    def assign(self, key: str | None) -> RouterVariant:
        return self.variants[bisect.bisect_right(self._ends, self.slot(key))]


def body_key(body: bytes, field: str) -> str | None:
    """The entity key `field` of a request body: /predict's first instance, or the first
    value of the OIP v2 input of that name. One request goes to one variant whole."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    value = None
    instances = doc.get("instances")
    if isinstance(instances, list) and instances and isinstance(instances[0], dict):
        value = instances[0].get(field)
    elif isinstance(doc.get("inputs"), list):
        for tensor in doc["inputs"]:
            if isinstance(tensor, dict) and tensor.get("name") == field and tensor.get("data"):
                data = tensor["data"]
                while isinstance(data, list) and data:
                    data = data[0]
                value = data
                break
    elif isinstance(doc.get("inputs"), dict):
        column = doc["inputs"].get(field)
        value = column[0] if isinstance(column, list) and column else None
    else:
        value = doc.get(field)
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


# Every variant's series exist at 0 from start-up, for the codes a variant answers with and
# the router's own 502: rate() over a series that appears with its first request misses that
# request, and an A/B guard reading a new variant's first burst of 5xx would see nothing.
SEEDED_CODES = tuple(sorted({*contract.SERVE_CODES[contract.PREDICT_ROUTE], "502"}))


class RouterMetrics:
    def __init__(self, endpoint: str, variants: tuple[str, ...] = ()):
        self.endpoint = endpoint
        self.requests: dict[tuple[str, str], int] = {
            (v, code): 0 for v in variants for code in SEEDED_CODES}
        self.durations: dict[str, Histogram] = {
            v: Histogram(contract.ROUTER_DURATION.buckets) for v in variants}
        self.rejections = admission.Rejections()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.ready = False

    def observe(self, variant: str, code: int, seconds: float) -> None:
        key = (variant, str(code))
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.durations.get(variant)
        if hist is None:
            hist = self.durations[variant] = Histogram(contract.ROUTER_DURATION.buckets)
        hist.observe(seconds)

    def describe(self):
        return []

    def collect(self) -> Iterator:
        e = self.endpoint
        requests = family(contract.ROUTER_REQUESTS)
        for (variant, code), n in sorted(self.requests.items()):
            requests.add_metric(label_values(contract.ROUTER_REQUESTS, endpoint=e,
                                             variant=variant, code=code), n)
        yield requests
        durations = family(contract.ROUTER_DURATION)
        for variant, h in sorted(self.durations.items()):
            durations.add_metric(label_values(contract.ROUTER_DURATION, endpoint=e,
                                              variant=variant), h.buckets(), h.total)
        yield durations
        yield from self.rejections.families(e, ROUTER_VARIANT)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RouterApp:
    def __init__(self, settings: RouterSettings, seed: int | None = None):
        self.settings = settings
        self.metrics = RouterMetrics(settings.endpoint, tuple(v.name for v in settings.variants))
        # variants the A/B guard stopped are taken out here (weights_override.py)
        self.assigner = weights_override.guarded(Assigner(settings.variants, seed),
                                                 settings.guard, settings.endpoint,
                                                 self.metrics.registry)
        self.draining = False
        self.inflight = 0  # forwards whose answer is not sent yet
        self._clients: dict[str, object] = {}
        self._retry_and_close = [(b"retry-after", str(settings.retry_after_seconds).encode()),
                                 (b"connection", b"close")]

    def begin_drain(self) -> None:
        self.draining, self.metrics.ready = True, False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == LIVE_PATH:
            return await _send(send, 200, b'{"live":true}', [])
        if path == READY_PATH:
            if self.draining:
                return await _send(send, 503, b'{"ready":false,"reason":"shutting down"}', [])
            return await _send(send, 200, b'{"ready":true}', [])
        if path == METRICS_PATH:
            return await _send(send, 200, self.metrics.render(), [],
                               CONTENT_TYPE_LATEST.encode())
        await self._forward(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        # aiohttp, not httpx: a quarter of the CPU per forwarded request (see shadow.py)
        import aiohttp

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
                self._clients = {v.name: aiohttp.ClientSession(
                    timeout=timeout, auto_decompress=False,
                    connector=aiohttp.TCPConnector(limit=CONNECTIONS_PER_VARIANT))
                    for v in self.settings.variants}
                self.metrics.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.begin_drain()
                await asyncio.gather(*(c.close() for c in self._clients.values()))
                await send({"type": "lifespan.shutdown.complete"})
                return

    def refuse_early(self, data: bytes) -> bytes | None:
        """The answer to a forward at the start of `data` that `_forward` would refuse
        anyway, or None: called by the protocol before the request is parsed (admission.py)."""
        if self.inflight < self.settings.max_inflight:
            return None
        request = admission.early_request(data)
        if request is None or request[0] in OWN_PATHS:
            return None
        self.metrics.rejections.count("overload")
        return admission.answer(503, {"error": "overloaded: too many requests in flight"},
                                admission.request_id_in(request[1]),
                                self.settings.retry_after_seconds)

    async def over_connection_limit(self, scope, receive, send) -> None:
        """Past the connection limit (connections.py): a 503 with Retry-After, counted."""
        self.metrics.rejections.count("connections")
        await _send(send, 503, b'{"error":"over the connection limit"}', self._retry_and_close)

    async def _forward(self, scope, receive, send) -> None:
        if self.inflight >= self.settings.max_inflight:  # before a byte of the body is read
            self.metrics.rejections.count("overload")
            return await _send(send, 503, b'{"error":"overloaded: too many requests in '
                               b'flight"}', self._retry_and_close)
        self.inflight += 1
        try:
            await self._admitted(scope, receive, send)
        finally:
            self.inflight -= 1

    async def _admitted(self, scope, receive, send) -> None:
        import aiohttp

        start = time.perf_counter()
        rid = request_id.from_headers(scope["headers"])
        s = self.settings
        try:
            body = await read_body(scope["headers"], receive, s.max_body_bytes,
                                   s.body_timeout_seconds)
        except Disconnected:
            return  # the client left: nothing to forward, no one to answer
        except BodyTimeout:
            # the rest of the body may still trickle in: the connection cannot be reused
            self.metrics.rejections.count("body_timeout")
            return await _send(send, 408, json.dumps({
                "error": f"the body did not arrive within {s.body_timeout_seconds:g}s"}).encode(),
                [(request_id.HEADER_BYTES, rid.encode()), (b"connection", b"close")])
        if body is None:
            return await _send(send, 413, json.dumps({"error": "the body is over "
                               f"{self.settings.max_body_bytes} bytes"}).encode(), [])
        variant = self.assigner.assign(self._key(scope["headers"], body))
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in FORWARDED_HEADERS}
        headers[request_id.HEADER] = rid
        headers[VARIANT_HEADER] = variant.name
        target = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}"
                                  if scope.get("query_string") else "")
        try:
            async with self._clients[variant.name].request(
                    scope["method"], variant.url + target, data=body, headers=headers) as answer:
                status, content = answer.status, await answer.read()
                kind = answer.headers.get("content-type", "application/json").encode("latin-1")
                extra = [(b"retry-after", answer.headers["retry-after"].encode("latin-1"))
                         ] if "retry-after" in answer.headers else []
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("variant %s did not answer: %s", variant.name, exc)
            status, kind, extra = 502, b"application/json", []
            content = json.dumps({"error": f"variant `{variant.name}` did not answer"}).encode()
        extra += [(request_id.HEADER_BYTES, rid.encode()),
                  (VARIANT_HEADER.encode(), variant.name.encode())]
        try:
            await _send(send, status, content, extra, kind)
        finally:
            self.metrics.observe(variant.name, status, time.perf_counter() - start)

    def _key(self, headers: list[tuple[bytes, bytes]], body: bytes) -> str | None:
        s = self.settings
        if s.header is not None:
            wanted = s.header.encode("latin-1")
            for k, v in headers:
                if k == wanted and v:
                    return v.decode("latin-1")
            return None
        if s.field is not None and body:
            return body_key(body, s.field)
        return None


async def _send(send, status: int, body: bytes, headers, kind: bytes = b"application/json"
                ) -> None:
    await send_response(send, status, body, [(b"content-type", kind), *headers])


def main(argv: list[str]) -> int:
    import argparse

    from .server import make_server
    from .settings import workload_config

    parser = argparse.ArgumentParser(prog="python -m mlc.runtime route",
                                     description="Route an A/B endpoint's requests to its "
                                     "variants by weight and sticky key.")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    config = workload_config(dict(os.environ))
    if config.get("role") != "router" or config.get("endpoint") != args.endpoint:
        raise SystemExit(f"error: MLC_ENDPOINT_CONFIG is not the router settings of endpoint "
                         f"`{args.endpoint}`")
    settings = RouterSettings.from_config(config)
    make_server(RouterApp(settings), args.host, args.port or int(config["port"])).run()
    return 0
