"""A user's own model server, as `engine: custom` runs one: a Starlette app on uvicorn that
answers `POST /predict` and `GET /ready`, instrumented with prometheus_client the way such
servers commonly are (a request counter by handler and status, a latency histogram by
handler with its own buckets, a gauge of requests in flight), on `/metrics` of the same
port. Nothing in it comes from mlc: the names are the user's, and mlc reads them only
through the endpoint's `container.metrics`.

    python -m tests.custom_server PORT

`POST /predict` with `{"fail": true}` answers 500, with `{"bad": true}` 400; anything else
200 after 20 ms of work.
"""

from __future__ import annotations

import asyncio
import sys
import time

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

REQUESTS = Counter("http_requests", "Requests answered.", ["handler", "status"])
LATENCY = Histogram("http_request_duration_seconds", "Request latency.", ["handler"],
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
INFLIGHT = Gauge("http_requests_inflight", "Requests being handled.")


async def predict(request: Request) -> Response:
    started = time.perf_counter()
    status = 500  # unless the request is answered otherwise below
    INFLIGHT.inc()
    try:
        body = await request.json()
        if body.get("bad"):
            status = 400
        elif body.get("fail"):
            status = 500
        else:
            await asyncio.sleep(0.02)
            status = 200
        return JSONResponse({"predictions": [0.5]} if status == 200 else {"error": "no"},
                            status_code=status)
    finally:
        INFLIGHT.dec()
        REQUESTS.labels("/predict", str(status)).inc()
        LATENCY.labels("/predict").observe(time.perf_counter() - started)


async def ready(_: Request) -> Response:
    return JSONResponse({"ready": True})


async def metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                        Route("/ready", ready), Route("/metrics", metrics)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
