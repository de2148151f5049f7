"""What retrains a model through the cooldown gate: a drift check's or a quality monitor's
alert (through the Alertmanager webhook, events.py), or an event trigger of
`training.triggers` (its own EventSource, event_sources.py). One shape for the Sensor and the
cooldown gate that each of them gets (events.py, cooldown.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...ir import ObjectWatch, OnDrift, Origin, ResolvedProject
from ...names import dns_label


@dataclass(frozen=True)
class RetrainTrigger:
    """An alert or an event that retrains a model."""

    name: str  # the check's, monitor's or trigger's name: an alert's `label`
    k8s_name: str  # unique among triggers: event, Sensor, cooldown key, mutex
    model: str
    on_drift: OnDrift  # action retrain, cooldown, maxRuns per period
    origin: Origin
    alert: str  # the alert's name; empty for an event trigger
    label: str  # `check`, `monitor` or `trigger`
    reason: str  # the training run's `reason` parameter: drift, quality, `<kind>-<trigger>`
    # An event trigger's own EventSource and the Sensor's filters on its events; None: the
    # Alertmanager webhook, and a filter for firing alerts.
    event_source: str | None = None
    filters: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    # the pipeline the gate starts: None, the model's training
    target: str | None = None
    action: str = "retrain"  # or `score`: the Sensor's name says which

    def pipeline(self, project: ResolvedProject) -> str:
        return self.target or project.models[self.model].pipeline or ""


DRIFT_ALERT = "DriftDetected"
QUALITY_ALERT = "ModelQualityDropped"


def retrain_checks(project: ResolvedProject) -> list[RetrainTrigger]:
    """The alerts that retrain: those Alertmanager posts to the webhook."""
    drift = [RetrainTrigger(c.name, c.k8s_name, c.model, c.on_drift, c.origin, DRIFT_ALERT,
                            "check", "drift")
             for c in project.drift_checks.values()
             if c.on_drift.action == "retrain" and project.models[c.model].pipeline]
    # `quality-` keeps a monitor's names apart from a drift check's of the same name
    quality = [RetrainTrigger(q.name, dns_label("quality", q.k8s_name), q.model, q.on_drop,
                              q.origin, QUALITY_ALERT, "monitor", "quality")
               for q in project.quality_monitors.values()
               if q.on_drop.action == "retrain" and project.models[q.model].pipeline]
    return drift + quality


def trigger_event_source_name(project: ResolvedProject, k8s_name: str) -> str:
    return dns_label(project.name, k8s_name)


def event_triggers(project: ResolvedProject) -> list[RetrainTrigger]:
    """`training.triggers` and batch endpoints' `triggers`: each listens through an
    EventSource of its own."""
    out = []
    for t in project.event_triggers.values():
        filters = None
        if t.object is not None and t.object.store != "minio":
            filters = {"data": object_filters(t.object)}
        if t.topic is not None and t.topic.filter_path is not None:
            filters = {"data": [{"path": f"body.{t.topic.filter_path}", "type": "string",
                                 "value": [exact(v) for v in t.topic.filter_values]}]}
        out.append(RetrainTrigger(t.name, t.k8s_name, t.model, t.limits, t.origin, "",
                                  "trigger", t.reason,
                                  trigger_event_source_name(project, t.k8s_name), filters,
                                  t.target, t.action))
    return out


def all_triggers(project: ResolvedProject) -> list[RetrainTrigger]:
    """Everything that gets a Sensor and a cooldown gate."""
    return retrain_checks(project) + event_triggers(project)


def _literal(c: str) -> str:
    # Go's RE2 reads `\` before any ASCII punctuation as that character, as Python does
    return c if c.isalnum() or c == "_" or ord(c) > 127 else "\\" + c


def exact(value: str) -> str:
    """Argo Events matches a string data filter as a Go regular expression anywhere in the
    value: this one matches `value` whole and nothing else."""
    return "^" + "".join(_literal(c) for c in value) + "$"


# What S3 writes as itself in a notification's (URL-encoded) object key.
_S3_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-")


def _s3_key_part(text: str) -> str:
    """`text` as it may stand in an S3 notification's object key: each character but the
    plain ones as itself or percent-encoded (either case of hex digits); `+` encoded only,
    since a `+` there is a space."""
    out = []
    for c in text:
        if c in _S3_PLAIN:
            out.append(c if c.isalnum() or c == "_" else "\\" + c)
            continue
        encoded = "".join("%" + "".join(f"[{d}{d.lower()}]" if d.isalpha() else d
                                        for d in f"{b:02X}") for b in c.encode())
        out.append(f"(?:{encoded})" if c == "+" else f"(?:{_literal(c)}|{encoded})")
    return "".join(out)


# Where the Sensor reads an S3 notification (one record per SQS message) and a GCS one (the
# Pub/Sub message's attributes), and the value of each that says "a new object".
S3_RECORD = "body.Records.0"
S3_CREATED = "^ObjectCreated:"
GCS_FINALIZED = "OBJECT_FINALIZE"


def object_filters(o: ObjectWatch) -> list[dict]:
    """The Sensor's data filters on a cloud bucket's notifications: a new object, in the
    bucket, whose key has the prefix and the suffix (each a filter of its own, as MinIO's
    prefix and suffix may overlap)."""
    def f(path: str, value: str) -> dict:
        return {"path": path, "type": "string", "value": [value]}

    if o.store == "s3":
        key = f"{S3_RECORD}.s3.object.key"
        out = [f(f"{S3_RECORD}.eventName", S3_CREATED),
               f(f"{S3_RECORD}.s3.bucket.name", exact(o.bucket))]
        part = _s3_key_part
    else:
        key = "attributes.objectId"
        out = [f("attributes.eventType", exact(GCS_FINALIZED)),
               f("attributes.bucketId", exact(o.bucket))]
        part = lambda text: "".join(_literal(c) for c in text)  # noqa: E731
    if o.prefix:
        out.append(f(key, "^" + part(o.prefix)))
    if o.suffix:
        out.append(f(key, part(o.suffix) + "$"))
    return out
