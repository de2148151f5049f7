"""promtool unit tests for a rule set: each alert fires on its unhealthy series and stays
silent on its healthy ones, with exactly the labels and rendered annotations expected.

Users run them as the test suite does: `promtool test rules monitoring/tests/*.test.yaml`
from the environment's folder (rule files are found relative to the test file).
"""

from __future__ import annotations

from typing import Any

from ...ir import ResolvedProject
from . import gotemplate, promql
from .alerts import Alert, Scenario, annotations, static_labels
from .rules import RuleSet

RULES_DIR = "monitoring/rules"
TESTS_DIR = "monitoring/tests"


def rules_path(rule_set: RuleSet) -> str:
    return f"{RULES_DIR}/{rule_set.name}.rules.yaml"


def tests_path(rule_set: RuleSet) -> str:
    return f"{TESTS_DIR}/{rule_set.name}.test.yaml"


def test_file(project: ResolvedProject, rule_set: RuleSet) -> dict[str, Any]:
    by_name: dict[str, list[Alert]] = {}
    for group in rule_set.groups:
        for item in group.rules:
            if isinstance(item, Alert):
                by_name.setdefault(item.name, []).append(item)
    cases = [_case(project, name, alerts, scenario)
             for name, alerts in by_name.items() for scenario in _scenarios(alerts)]
    # One rule file is evaluated at one pace: the finest any scenario samples at.
    pace = min(case[1] for case in cases)
    return {
        "rule_files": [f"../rules/{rule_set.name}.rules.yaml"],
        "evaluation_interval": promql.duration(pace),
        "tests": [case[0] for case in cases],
    }


def _scenarios(alerts: list[Alert]) -> list[Scenario]:
    """Every scenario of one alert name, once each, in declaration order."""
    out: list[Scenario] = []
    for alert in alerts:
        for scenario in (*(s for s, _ in alert.unhealthy), *alert.healthy):
            if scenario not in out:
                out.append(scenario)
    return out


def _case(project: ResolvedProject, name: str, alerts: list[Alert],
          scenario: Scenario) -> tuple[dict[str, Any], int]:
    expected = []
    for alert in alerts:
        fired = alert.fired(scenario)
        if fired is not None:
            expected.append(_expected(project, alert, fired))
        elif scenario not in alert.healthy:
            # promtool would see this rule's alerts too; the test would be guessing.
            raise ValueError(f"a rule of alert {name} says nothing about one of its scenarios")
    case = {
        "interval": promql.duration(scenario.interval_seconds),
        "input_series": [{"series": s.notation(), "values": s.values}
                         for s in scenario.series],
        "alert_rule_test": [{
            "eval_time": promql.duration(scenario.eval_seconds),
            "alertname": name,
            "exp_alerts": expected,
        }],
    }
    return case, scenario.pace


def _expected(project: ResolvedProject, alert: Alert, fired: dict[str, str]) -> dict[str, Any]:
    # Rule labels override the expression's, as Prometheus applies them.
    labels = {**fired, **static_labels(project, alert)}
    return {
        "exp_labels": labels,
        "exp_annotations": {k: gotemplate.rendered(v, labels)
                            for k, v in annotations(project, alert).items()},
    }
