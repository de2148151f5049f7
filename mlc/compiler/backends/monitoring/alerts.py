"""An alert together with the evidence that it works.

Each alert is declared with two kinds of synthetic scenarios: unhealthy series on which it
must fire (with exactly these labels) and healthy series on which it must stay silent. The
rule and its promtool unit test are generated from the same declaration, so a rule cannot
be changed without its test changing with it, and `promtool test rules` proves both.

Several rules may share an alert name (the SLO burn-rate lines do, told apart by labels);
promtool tests an alert name as a whole, so each of them declares every scenario of the
name as one it fires on or one it stays silent on (promtool_tests.py checks that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ...ir import ResolvedProject
from . import gotemplate, promql
from .gotemplate import Text

Severity = Literal["critical", "warning"]


@dataclass(frozen=True)
class Series:
    """One input series of a promtool test, in its expanding notation ("0+60x120")."""

    name: str
    labels: dict[str, str]
    values: str

    def notation(self) -> str:
        return promql.selector(self.name, self.labels)


@dataclass(frozen=True)
class Scenario:
    """Synthetic series sampled every `interval_seconds`, looked at after `eval_seconds`.

    promtool evaluates the rules every `pace_seconds` (default: the sampling interval);
    evaluating less often than sampling keeps tests of many rules fast, as long as the pace
    divides `eval_seconds` and every `for` duration.
    """

    series: tuple[Series, ...]
    eval_seconds: int
    interval_seconds: int = 60
    pace_seconds: int | None = None

    @property
    def pace(self) -> int:
        return self.pace_seconds or self.interval_seconds


# A scenario an alert fires on, with the labels its expression yields there (the rule's
# static labels are added when the test is written).
Firing = tuple[Scenario, dict[str, str]]


@dataclass(frozen=True)
class Alert:
    name: str  # CamelCase, unique within its rule group
    expr: str
    severity: Severity
    summary: Text
    description: Text
    unhealthy: tuple[Firing, ...]
    healthy: tuple[Scenario, ...]
    for_seconds: int = 0
    labels: dict[str, str] = field(default_factory=dict)  # static labels besides severity

    def __post_init__(self) -> None:
        if not self.unhealthy or not self.healthy:
            raise ValueError(f"alert {self.name} needs a firing and a silent scenario")

    def fired(self, scenario: Scenario) -> dict[str, str] | None:
        """The expression's labels if this alert fires on `scenario`, else None."""
        return next((labels for s, labels in self.unhealthy if s == scenario), None)


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str


@dataclass(frozen=True)
class Group:
    """One rule group: recording rules or alerts, evaluated together."""

    name: str
    rules: tuple[Recording | Alert, ...]


def static_labels(project: ResolvedProject, alert: Alert) -> dict[str, str]:
    # The namespace label is set on every alert, not only inherited from the series, so that
    # the environment's AlertmanagerConfig (which matches on its own namespace) routes even
    # alerts computed from series scraped in another namespace.
    return {**alert.labels, "severity": alert.severity,
            promql.SCOPE_LABEL: project.platform.namespace}


def annotations(project: ResolvedProject, alert: Alert) -> dict[str, Text]:
    runbook = f"{project.alerts.runbook_url}/{alert.name}"
    return {"summary": alert.summary, "description": alert.description,
            "runbook_url": (runbook,)}


def rule(project: ResolvedProject, item: Recording | Alert) -> dict[str, Any]:
    """The rule as Prometheus and the PrometheusRule CRD spell it."""
    if isinstance(item, Recording):
        return {"record": item.record, "expr": item.expr}
    out: dict[str, Any] = {"alert": item.name, "expr": item.expr}
    if item.for_seconds:
        out["for"] = promql.duration(item.for_seconds)
    out["labels"] = {k: gotemplate.literal(v) for k, v in static_labels(project, item).items()}
    out["annotations"] = {k: gotemplate.template(v)
                          for k, v in annotations(project, item).items()}
    return out


def groups(project: ResolvedProject, items: list[Group]) -> list[dict[str, Any]]:
    return [{"name": g.name, "rules": [rule(project, r) for r in g.rules]} for g in items]
