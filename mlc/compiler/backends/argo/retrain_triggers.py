"""The alerts that retrain a model: a drift check's and a quality monitor's, one shape for
the webhook event, the Sensor and the cooldown gate that each of them gets (events.py,
cooldown.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ...ir import OnDrift, Origin, ResolvedProject
from ...names import dns_label


@dataclass(frozen=True)
class RetrainTrigger:
    """An alert that retrains a model: a drift check's, or a quality monitor's."""

    name: str  # the check's or monitor's name: the alert's `label`
    k8s_name: str  # unique among triggers: webhook event, Sensor, cooldown key, mutex
    model: str
    on_drift: OnDrift  # action retrain, cooldown, maxRuns per period
    origin: Origin
    alert: str  # the alert's name
    label: str  # `check` or `monitor`
    reason: str  # the training run's `reason` parameter: drift, quality


DRIFT_ALERT = "DriftDetected"
QUALITY_ALERT = "ModelQualityDropped"


def retrain_checks(project: ResolvedProject) -> list[RetrainTrigger]:
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
