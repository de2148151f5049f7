"""The monitoring backend: Prometheus rules, scrape targets, dashboards and alert routing.

Output, per environment:

    monitoring/prometheusrule-<subject>.yaml   PrometheusRule: recording and alerting rules
    monitoring/rules/<subject>.rules.yaml      the same groups as a plain file for promtool
    monitoring/tests/<subject>.test.yaml       promtool unit tests of every alert
    monitoring/podmonitor-<endpoint>.yaml      scrape the endpoint's serving pods
    monitoring/servicemonitor-pushgateway.yaml scrape the Pushgateway the drift checks push to
    monitoring/dashboard-<endpoint>.yaml       Grafana dashboard (ConfigMap for the sidecar)
    monitoring/alertmanagerconfig.yaml         notification routes and the retrain webhook

Subjects are `endpoint-<name>`, `drift-<name>`, `model-<name>` and `feature-view-<name>`
(rules.py), `scoring-<name>` for batch endpoints (scoring.py) and `verdict-<name>` for A/B
endpoints with a verdict (verdict_rules.py) and `ingestion-<source>-ingest` for Kafka
ingestions (ingest_rules.py), `stream-<endpoint>` for stream endpoints (stream_rules.py).
Every query reads only the
metrics of `mlc.metrics` (a test checks each one), built through `promql.py`.

Assumptions the cluster must meet, documented here because no object can enforce them:
Prometheus selects these PrometheusRules, PodMonitors and ServiceMonitors (the operator's
`*Selector`s), Alertmanager selects the AlertmanagerConfig, Grafana's sidecar watches this
namespace, and a Pushgateway runs in it (servicemonitors.py). Pipeline metrics come from the
Argo Workflows controller, scraped by whatever scrapes the controller; how their queries are
told apart per environment is decided in one place, `promql.scope`.
"""

from __future__ import annotations

from ...ir import ResolvedProject
from ...output import OutputFile
from ..objects import metadata
from . import alerts, dashboards, promtool_tests, servicemonitors
from .ab_guard_rules import ab_guard_rule_sets
from .alertmanager import alertmanager_config
from .ingest_rules import ingest_rule_sets
from .quality_rules import quality_rule_sets
from .rules import RuleSet, rule_sets
from .scoring import scoring_rule_sets
from .stream_rules import stream_rule_sets
from .verdict_rules import verdict_rule_sets


def emit(project: ResolvedProject) -> list[OutputFile]:
    src = project.source
    files = []
    for rule_set in [*rule_sets(project), *scoring_rule_sets(project),
                     *verdict_rule_sets(project), *ingest_rule_sets(project),
                     *stream_rule_sets(project), *quality_rule_sets(project),
                     *ab_guard_rule_sets(project)]:
        groups = alerts.groups(project, list(rule_set.groups))
        files += [
            OutputFile(f"monitoring/prometheusrule-{rule_set.name}.yaml",
                       prometheus_rule(project, rule_set, groups), src),
            OutputFile(promtool_tests.rules_path(rule_set), {"groups": groups}, src),
            OutputFile(promtool_tests.tests_path(rule_set),
                       promtool_tests.test_file(project, rule_set), src),
        ]
    for endpoint in project.endpoints.values():
        if endpoint.mode in ("batch", "stream"):
            # a batch job answers no requests: nothing to scrape or chart; a stream
            # consumer's scrape target and alerts are the streams backend's
            continue
        files += [
            OutputFile(f"monitoring/podmonitor-{endpoint.k8s_name}.yaml",
                       servicemonitors.pod_monitors(project, endpoint), src),
            OutputFile(f"monitoring/dashboard-{endpoint.k8s_name}.yaml",
                       dashboards.config_map(project, endpoint), src),
        ]
    if servicemonitors.uses_pushgateway(project):
        files.append(OutputFile("monitoring/servicemonitor-pushgateway.yaml",
                                servicemonitors.pushgateway_monitor(project), src))
    config = alertmanager_config(project)
    if config is not None:
        files.append(OutputFile("monitoring/alertmanagerconfig.yaml", config, src))
    return files


def prometheus_rule(project: ResolvedProject, rule_set: RuleSet, groups: list[dict]) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(project, rule_set.name, origin=rule_set.origin,
                             component="monitoring"),
        "spec": {"groups": groups},
    }
