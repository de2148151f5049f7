"""A CloudEvent (specification 1.0) in HTTP binary content mode, as KServe's payload logger
sends it: the attributes are `ce-` headers, the body is the payload itself.

KServe's agent sets, besides the required `ce-id`, `ce-specversion`, `ce-type` and
`ce-source` (and `ce-time`), the extension attributes `ce-inferenceservicename`,
`ce-namespace`, `ce-component` (predictor, transformer, explainer) and `ce-endpoint`
(default or canary). Its `ce-id` is the request's id (its `x-request-id`, or one the
agent made up), the same on the request's event and the response's: the pairing key.
"""

from __future__ import annotations

from dataclasses import dataclass

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
SPEC_VERSION = "1.0"
MAX_ID_CHARS = 256  # an id is a key held in memory and written to the log: bounded
EXTENSIONS = ("inferenceservicename", "namespace", "component", "endpoint")


class NotAnEvent(ValueError):
    """The request is not a CloudEvent this receiver reads; `reason` is its counter label."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Event:
    id: str
    kind: str  # "request" or "response"
    source: str
    time: str | None
    content_type: str
    extensions: dict[str, str]
    body: bytes


def parse(headers: list[tuple[bytes, bytes]], body: bytes) -> Event:
    """The event of a binary-mode POST; raises NotAnEvent for anything else."""
    h: dict[str, str] = {}
    for key, value in headers:
        h[key.decode("latin-1").lower()] = value.decode("latin-1")
    if h.get("content-type", "").startswith("application/cloudevents"):
        raise NotAnEvent("structured_mode", "a structured-mode CloudEvent; KServe's logger "
                         "sends binary mode (attributes as ce- headers)")
    if "ce-id" not in h or "ce-type" not in h:
        raise NotAnEvent("not_cloudevent", "no ce-id or ce-type header")
    if h.get("ce-specversion") != SPEC_VERSION:
        raise NotAnEvent("specversion", f"ce-specversion {h.get('ce-specversion')!r} is not "
                         f"{SPEC_VERSION}")
    event_id = h["ce-id"].strip()
    if not event_id or len(event_id) > MAX_ID_CHARS:
        raise NotAnEvent("bad_id", f"ce-id is empty or over {MAX_ID_CHARS} characters")
    kind = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}.get(h["ce-type"])
    if kind is None:
        raise NotAnEvent("event_type", f"ce-type {h['ce-type']!r} is neither {REQUEST_TYPE} "
                         f"nor {RESPONSE_TYPE}")
    return Event(id=event_id, kind=kind, source=h.get("ce-source", ""), time=h.get("ce-time"),
                 content_type=h.get("content-type", "application/json"),
                 extensions={x: h[f"ce-{x}"] for x in EXTENSIONS if f"ce-{x}" in h},
                 body=body)
