"""What retrains a model through the cooldown gate: a drift check's or a quality monitor's
alert (through the Alertmanager webhook, events.py), or an event trigger of
`training.triggers` (its own EventSource, event_sources.py). One shape for the Sensor and the
cooldown gate that each of them gets (events.py, cooldown.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...ir import OnDrift, Origin, ResolvedProject
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


def exact(value: str) -> str:
    """Argo Events matches a string data filter as a Go regular expression anywhere in the
    value: this one matches `value` whole and nothing else."""
    # Go's RE2 reads `\` before any ASCII punctuation as that character, as Python does
    return "^" + "".join(c if c.isalnum() or c == "_" or ord(c) > 127 else "\\" + c
                         for c in value) + "$"
