"""The monitoring backend: escaping, schedules, SLO windows, and the objects it emits.

promtool runs the rules in test_promtool.py; the metrics contract is checked in
test_metrics_contract.py. Here: the parts that can be pinned without a tool, and the
prometheus-operator objects against their upstream CRD schemas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mlc.compiler.backends import kustomize, monitoring
from mlc.compiler.backends.monitoring import gotemplate, promql, schedules, slo
from mlc.compiler.backends.monitoring.gotemplate import Label
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project
from mlc.compiler.render import render

from . import crd_monitoring_check as crd
from .conftest import ROOT
from .monitoring_projects import HOSTILE_ENDPOINT, example, hostile, shop

# Any text a user could write, quotes, backslashes, braces and control characters included
# (lone surrogates are not text: they cannot be written to a file in the first place).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
NASTY = ['"', "\\", '\\"', "{{", "}}", "{{ .Labels }}", "{{`x`}}", "{", "a{", "\n", "\r\n",
         "\t", "\x00", "\x7f", "é", "日本", "😀", "\u2028", "$x", "${x}", "5..", ".*", "a|b",
         "(", "[", "^$"]


@pytest.fixture(scope="module")
def prod():
    return example("prod")


def files_by_path(project) -> dict:
    return {f.path: f.content for f in monitoring.emit(project)}


# --- PromQL escaping -------------------------------------------------------------------------


@pytest.mark.parametrize("value, literal", [
    ("fraud-api", '"fraud-api"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("{{ .x }}", '"{{ .x }}"'),  # PromQL gives braces in strings no meaning
    ("two\nlines", '"two\\nlines"'),
    ("\x00\x7f", '"\\x00\\x7f"'),
    ("\u2028", '"\\u2028"'),
    ("é 日本", '"é 日本"'),
])
def test_promql_string(value: str, literal: str):
    assert promql.string(value) == literal


@given(TEXT)
def test_promql_string_reads_back_exactly(value: str):
    parser = pytest.importorskip("promql_parser")
    ast = parser.parse(f"m{{l={promql.string(value)}}}")
    (matcher,) = ast.matchers.matchers
    assert matcher.value == value


@given(TEXT)
def test_quote_meta_matches_itself_only(value: str):
    pattern = promql.quote_meta(value)
    assert re.fullmatch(pattern, value, flags=re.DOTALL)
    assert not re.fullmatch(pattern, value + "x", flags=re.DOTALL)


def test_quote_meta_escapes_what_re2_reads_as_syntax():
    assert promql.quote_meta("a.b*c|d(e)[f]{g}^h$i+j?k\\") == (
        "a\\.b\\*c\\|d\\(e\\)\\[f\\]\\{g\\}\\^h\\$i\\+j\\?k\\\\")
    assert promql.quote_meta("a-b c#d") == "a-b c#d"  # RE2 rejects some of Python's escapes
    assert promql.one_of(["b.x", "a|b", "b.x"]) == "a\\|b|b\\.x"


def test_durations_numbers_and_le_labels():
    assert [promql.duration(s) for s in (30, 300, 3600, 5400, 86400, 3 * 86400)] == [
        "30s", "5m", "1h", "90m", "1d", "3d"]
    assert [promql.number(x) for x in (1.0, 0.001, 14.4, 1e-05)] == ["1", "0.001", "14.4",
                                                                      "1e-05"]
    assert promql.le_values(1.0) == ["1", "1.0"]  # Go's and Python's client both match
    assert promql.le_values(0.1) == ["0.1"]
    with pytest.raises(ValueError):
        promql.duration(0)


def test_latency_objective_is_measured_at_the_next_bucket_up():
    assert promql.latency_bucket(0.1) == 0.1
    assert promql.latency_bucket(0.12) == 0.25
    assert promql.latency_bucket(60) == 10.0  # above every bucket: the largest one


# --- Go templates ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, source", [
    ("plain", "plain"),
    ("{{ .Labels }}", '{{ "{" }}{{ "{" }} .Labels }}'),
    ("ends with {", 'ends with {{ "{" }}'),
    ("}} alone", "}} alone"),
    ('"\\\n', '"\\\n'),  # quotes, backslashes and newlines mean nothing outside an action
])
def test_template_literal(text: str, source: str):
    assert gotemplate.literal(text) == source


def test_template_keeps_user_braces_out_of_actions():
    parts = ("x{", Label("feature"), " {{y}}")
    assert gotemplate.template(parts) == 'x{{ "{" }}{{ $labels.feature }} {{ "{" }}{{ "{" }}y}}'
    assert gotemplate.rendered(parts, {"feature": "{{f}}"}) == "x{{{f}} {{y}}"
    with pytest.raises(ValueError):
        gotemplate.template((Label("not a label"),))


@given(TEXT)
def test_template_literal_never_opens_an_action(text: str):
    source = gotemplate.literal(text)
    # Every `{{` in the output is one of our own `{{ "{" }}` actions.
    assert source.replace('{{ "{" }}', "").count("{") == 0


# --- schedules and SLO windows ------------------------------------------------------------


@pytest.mark.parametrize("cron, seconds", [
    ("0 * * * *", 3600), ("*/5 * * * *", 300), ("5/15 * * * *", 900), ("0 */6 * * *", 21600),
    ("0 3 * * 1", 7 * 86400), ("0 3 * * 1-5", 3 * 86400), ("0 3 * * mon-fri", 3 * 86400),
    ("0 0 1,15 * 1", 7 * 86400),  # both day fields restricted: either matches
    ("0 0 29 2 *", 4 * 365 * 86400 + 86400), ("@daily", 86400), ("@every 1h30m", 5400),
])
def test_longest_gap_between_runs(cron: str, seconds: int):
    assert schedules.max_interval_seconds(cron) == seconds


def test_a_schedule_that_never_runs():
    assert schedules.max_interval_seconds("0 0 31 2 *") is None


def test_burn_windows_are_the_workbook_for_30_days_and_scale_with_the_window():
    table = [(w.long, w.short, w.rate, w.severity) for w in slo.burn_windows(30 * 86400)]
    assert table == [(3600, 300, 14.4, "critical"), (21600, 1800, 6.0, "critical"),
                     (86400, 7200, 3.0, "warning"), (259200, 21600, 1.0, "warning")]
    week = slo.burn_windows(7 * 86400)
    assert [(w.long, w.short) for w in week] == [(840, 300), (5040, 420), (20160, 1680),
                                                 (60480, 5040)]
    assert [w.rate for w in week] == [14.4, 6.0, 3.0, 1.0]


def test_burn_lines_that_cannot_fire_are_left_out(tmp_path: Path):
    # churn-lite's availability objective is 90%: 14.4 times its budget exceeds 100%. Its
    # SLO window is 28 days, so the other lines' windows are 28/30 of the workbook's.
    project = shop(tmp_path, "prod")
    alerts = slo.burn_alerts(project, project.endpoints["churn-lite"])
    availability = [a for a in alerts if a.labels["slo"] == "availability"]
    assert [(a.labels["long_window"], a.severity) for a in availability] == [
        ("336m", "critical"), ("1344m", "warning"), ("4032m", "warning")]


def test_latency_between_buckets_says_so(tmp_path: Path):
    project = shop(tmp_path, "prod")
    (alert, *_) = [a for a in slo.burn_alerts(project, project.endpoints["churn-api"])
                   if a.labels["slo"] == "latency"]
    assert 'le=~"0\\\\.25"' in "".join(r.expr for r in slo.recording_rules(
        project, project.endpoints["churn-api"]))
    assert "asks for 0.12s" in alert.description[0]


# --- emitted objects -------------------------------------------------------------------------


def test_example_files(prod):
    paths = sorted(files_by_path(prod))
    assert paths == [
        "monitoring/alertmanagerconfig.yaml",
        "monitoring/dashboard-fraud-api.yaml",
        "monitoring/podmonitor-fraud-api.yaml",
        "monitoring/prometheusrule-drift-fraud-inputs.yaml",
        "monitoring/prometheusrule-endpoint-fraud-api.yaml",
        "monitoring/prometheusrule-feature-view-customer-stats.yaml",
        "monitoring/prometheusrule-feature-view-merchant-stats.yaml",
        "monitoring/prometheusrule-model-fraud-classifier.yaml",
        "monitoring/rules/drift-fraud-inputs.rules.yaml",
        "monitoring/rules/endpoint-fraud-api.rules.yaml",
        "monitoring/rules/feature-view-customer-stats.rules.yaml",
        "monitoring/rules/feature-view-merchant-stats.rules.yaml",
        "monitoring/rules/model-fraud-classifier.rules.yaml",
        "monitoring/servicemonitor-pushgateway.yaml",
        "monitoring/tests/drift-fraud-inputs.test.yaml",
        "monitoring/tests/endpoint-fraud-api.test.yaml",
        "monitoring/tests/feature-view-customer-stats.test.yaml",
        "monitoring/tests/feature-view-merchant-stats.test.yaml",
        "monitoring/tests/model-fraud-classifier.test.yaml",
    ]


def alert_names(files: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for doc in files.values():
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule":
            out[doc["metadata"]["name"]] = {r["alert"] for g in doc["spec"]["groups"]
                                            for r in g["rules"] if "alert" in r}
    return out


def test_every_subject_gets_its_alerts(prod):
    assert alert_names(files_by_path(prod)) == {
        "endpoint-fraud-api": {"EndpointAvailabilityBudgetBurn", "EndpointLatencyBudgetBurn",
                               "EndpointHighErrorRatio", "EndpointSaturated",
                               "EndpointNoTraffic"},
        "drift-fraud-inputs": {"FeatureDrift", "DriftDetected", "DriftCheckFailing",
                               "DriftCheckNotRunning"},
        "model-fraud-classifier": {"TrainingPipelineFailed", "ModelStale"},
        "feature-view-customer-stats": {"MaterializationLagging"},
        "feature-view-merchant-stats": {"MaterializationLagging"},
    }


def test_serverless_endpoints_expect_quiet_and_unserved_models_are_trained(tmp_path: Path):
    names = alert_names(files_by_path(shop(tmp_path, "dev")))
    assert "EndpointNoTraffic" not in names["endpoint-churn-lite"]  # scales to zero by design
    # Not served: its staleness is measured from its training pipeline's last success.
    assert names["model-scorer"] == {"TrainingPipelineFailed", "ModelStale"}
    assert "EndpointAvailabilityBudgetBurn" in names["endpoint-churn-lite"]


def test_every_alert_is_annotated_and_scoped(prod):
    for doc in files_by_path(prod).values():
        if not (isinstance(doc, dict) and doc.get("kind") == "PrometheusRule"):
            continue
        for rule in (r for g in doc["spec"]["groups"] for r in g["rules"] if "alert" in r):
            assert rule["labels"]["severity"] in ("critical", "warning"), rule
            assert rule["labels"]["namespace"] == "fraud-prod"
            assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
            assert rule["annotations"]["runbook_url"] == (
                f"https://runbooks.example.com/fraud-detection/{rule['alert']}")
            assert "fraud-prod" in rule["expr"] or 'pipeline="' in rule["expr"], rule["expr"]


def test_promtool_files_hold_exactly_the_deployed_groups(prod):
    files = files_by_path(prod)
    for path, doc in list(files.items()):
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule":
            name = doc["metadata"]["name"]
            assert files[f"monitoring/rules/{name}.rules.yaml"] == {"groups": doc["spec"]["groups"]}
            test = files[f"monitoring/tests/{name}.test.yaml"]
            assert test["rule_files"] == [f"../rules/{name}.rules.yaml"]
            tested = {c["alert_rule_test"][0]["alertname"] for c in test["tests"]}
            assert tested == alert_names({path: doc})[name]


def test_rule_and_test_files_are_not_kubernetes_resources(prod):
    files = monitoring.emit(prod)
    (kustomization,) = kustomize.package(prod, files)
    resources = kustomization.content["resources"]
    assert "monitoring/alertmanagerconfig.yaml" in resources
    assert not [r for r in resources if "/rules/" in r or "/tests/" in r]


def test_deterministic(prod):
    assert render(monitoring.emit(prod)) == render(monitoring.emit(example("prod")))


@pytest.mark.slow
def test_objects_match_the_prometheus_operator_crds(prod, tmp_path: Path):
    if not crd.available():
        pytest.skip(f"upstream CRD schemas not found at {crd.FOLDER}")
    checked = 0
    for project in (prod, example("dev"), shop(tmp_path, "prod"), hostile(prod)):
        for path, data in render(monitoring.emit(project)).items():
            if "/rules/" in path or "/tests/" in path:
                continue  # promtool's files, not Kubernetes objects
            for doc in yaml.load_all(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
                if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                    assert crd.errors(doc) == [], path
                    checked += 1
    assert checked >= 20


def test_crd_check_rejects_unknown_fields(prod):
    if not crd.available():
        pytest.skip(f"upstream CRD schemas not found at {crd.FOLDER}")
    monitor = files_by_path(prod)["monitoring/podmonitor-fraud-api.yaml"]
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["podMetricsEndpoints"][0]["honourLabels"] = True
    assert crd.errors(broken)


def test_pod_monitor_keeps_the_endpoint_label(prod):
    monitor = files_by_path(prod)["monitoring/podmonitor-fraud-api.yaml"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint == {"portNumber": 8080, "path": "/metrics", "honorLabels": True}
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/part-of": "fraud-detection", "app.kubernetes.io/name": "fraud-api"}


def test_pod_monitor_selects_the_serving_pods():
    """Against what the serving backend really emits: labels and port must meet."""
    (result,) = compile_project(ROOT, ["prod"], Diagnostics())
    docs = [d for path, data in result.files.items() if path.endswith(".yaml")
            for d in yaml.load_all(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))]
    (monitor,) = [d for d in docs if d.get("kind") == "PodMonitor"]
    wanted = monitor["spec"]["selector"]["matchLabels"]
    port = monitor["spec"]["podMetricsEndpoints"][0]["portNumber"]
    templates = [d["spec"]["template"] for d in docs if d.get("kind") in ("Deployment", "Rollout")]
    assert templates
    for template in templates:
        assert wanted.items() <= template["metadata"]["labels"].items()
        ports = [p["containerPort"] for c in template["spec"]["containers"]
                 for p in c.get("ports", [])]
        assert port in ports


def test_dashboard_config_map(prod):
    config_map = files_by_path(prod)["monitoring/dashboard-fraud-api.yaml"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = config_map["data"].values()
    dashboard = json.loads(text)
    assert text == json.dumps(dashboard, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert dashboard["uid"].startswith("mlc-") and len(dashboard["uid"]) <= 40
    assert dashboard["uid"] != json.loads(next(iter(files_by_path(example("dev"))[
        "monitoring/dashboard-fraud-api.yaml"]["data"].values())))["uid"]
    titles = [p["title"] for p in dashboard["panels"]]
    assert "Latency" in titles and "Drift score by feature (check fraud-inputs)" in titles


# --- alert routing ---------------------------------------------------------------------------


def test_routes_reference_secrets_and_retrain_on_drift(prod):
    config = files_by_path(prod)["monitoring/alertmanagerconfig.yaml"]
    receivers = {r["name"]: r for r in config["spec"]["receivers"]}
    slack = receivers["risk-slack"]["slackConfigs"][0]
    assert slack["apiURL"] == {"name": "alerting", "key": "slack-webhook-url"}
    assert slack["channel"] == "#risk-ml-alerts"
    pager = receivers["risk-pager"]["pagerdutyConfigs"][0]
    assert pager["routingKey"]["key"] == "routing-key"
    webhook = receivers["mlc.retrain.fraud-inputs"]["webhookConfigs"][0]
    # The Argo backend's EventSource for this check (argo/events.py).
    assert webhook["url"] == ("http://fraud-detection-alerts-eventsource-svc.fraud-prod.svc:12000"
                              "/drift/fraud-inputs")
    assert webhook["sendResolved"] is False
    routes = config["spec"]["route"]["routes"]
    retrain = routes[0]
    assert retrain["receiver"] == "mlc.retrain.fraud-inputs" and retrain["continue"]
    assert {(m["name"], m["value"]) for m in retrain["matchers"]} == {
        ("alertname", "DriftDetected"), ("check", "fraud-inputs")}
    assert retrain["repeatInterval"] == "1d"  # the check's retraining cooldown
    critical = next(r for r in routes if r["matchers"][0]["value"] == "critical")
    assert [r["receiver"] for r in critical["routes"]] == ["risk-pager", "risk-slack"]


def test_dev_only_alerts_on_drift():
    config = files_by_path(example("dev"))["monitoring/alertmanagerconfig.yaml"]
    receivers = [r["name"] for r in config["spec"]["receivers"]]
    assert not [r for r in receivers if r.startswith("mlc.retrain.")]


def test_email_and_webhook_routes(tmp_path: Path):
    config = files_by_path(shop(tmp_path, "prod"))["monitoring/alertmanagerconfig.yaml"]
    receivers = {r["name"]: r for r in config["spec"]["receivers"]}
    email = receivers["ops-mail"]["emailConfigs"][0]
    # Alertmanager expands these as templates: the braces from ml.yaml must stay text.
    assert email["to"] == gotemplate.literal("ops@example.com, a{{b}}@example.com")
    assert email["from"] == gotemplate.literal("mlc {{ .x }} <mlc@example.com>")
    assert email["authPassword"] == {"name": "smtp", "key": "password"}
    hook = receivers["ops-hook"]["webhookConfigs"][0]
    assert hook["url"] == "https://hooks.example.com/x?a={{b}}"  # a URL is not a template
    assert hook["httpConfig"]["authorization"]["credentials"] == {"name": "hooks",
                                                                  "key": "token"}
    check = next(r for r in config["spec"]["route"]["routes"]
                 if r["matchers"] == [{"name": "check", "matchType": "=",
                                       "value": "weekly-inputs"}])
    assert [r["receiver"] for r in check["routes"]] == ["ops-mail", "ops-hook"]


def test_hostile_names_are_escaped_in_rules(prod):
    files = files_by_path(hostile(prod))
    rules = files["monitoring/prometheusrule-endpoint-fraud-api.yaml"]
    rules = [r for g in rules["spec"]["groups"] for r in g["rules"]]
    # In PromQL, a string literal: escaped for PromQL, braces untouched.
    assert promql.string(HOSTILE_ENDPOINT) in "".join(r["expr"] for r in rules)
    # In templates (annotations and labels), no brace of ours opens an action.
    templates = [v for r in rules if "alert" in r
                 for v in (*r["annotations"].values(), *r["labels"].values())]
    assert any(HOSTILE_ENDPOINT.split("{")[0] in v for v in templates)
    for value in templates:
        assert value.replace('{{ "{" }}', "").count("{") == value.count("{{ $labels.") * 2
