"""How an endpoint's live traffic reaches its A/B variants and its shadow (resolve/traffic.py):
the gateway's HTTPRoute (checked against the Gateway API CRD, including its CEL rules that a
JSON Schema check skips), the A/B router's Deployment and settings, and the policies that
let each caller in."""

from __future__ import annotations

import json
import shutil
import subprocess

import kubernetes_validate
import pytest

from mlc.compiler.backends.serving.gateway import route_prefix
from mlc.compiler.diagnostics import Diagnostics, Severity
from mlc.compiler.resolve.traffic import GATEWAY_UNUSED, replicas_for_share

from . import schema_check
from .test_serving import K8S_VERSIONS, build

HTTPROUTE_CRD = "gateway-api/gateway.networking.k8s.io_httproutes.yaml"
GATEWAY = {"gateway": {"api": "gateway-api", "name": "public", "namespace": "edge"}}
AB = {"strategy": "ab", "variants": [{"name": "control", "weight": 90},
                                     {"name": "treatment", "alias": "challenger", "weight": 10}]}
SHADOW = {"strategy": "shadow", "shadow": {"alias": "challenger", "percent": 30}}


def _route_errors(route: dict) -> list[str]:
    errors = schema_check.check_crd(route, HTTPROUTE_CRD, "v1")
    # the CRD's CEL rules that these routes could break (a JSON Schema check skips CEL)
    for rule in route["spec"]["rules"]:
        weights = [b.get("weight", 1) for b in rule["backendRefs"]]
        if any(not 0 <= w <= 1_000_000 for w in weights):
            errors.append(f"weights out of range: {weights}")
        for f in rule.get("filters", []):
            if f["type"] == "RequestMirror":
                ref = f["requestMirror"]["backendRef"]
                if ref["kind"] == "Service" and "port" not in ref:
                    errors.append("a mirrored Service needs a port")
                if not 0 <= f["requestMirror"]["percent"] <= 100:
                    errors.append("mirror percent out of range")
            if f["type"] == "URLRewrite":
                path = f["urlRewrite"]["path"]
                if path["type"] == "ReplacePrefixMatch" and not any(
                        m["path"]["type"] == "PathPrefix" for m in rule["matches"]):
                    errors.append("ReplacePrefixMatch needs a PathPrefix match")
    return errors


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    return build(tmp_path_factory.mktemp("routed"), {
        "ab": {"model": "scorer", "rollout": AB},
        "sticky": {"model": "scorer", "rollout": {**AB, "assignment": {"header": "X-User-Id"}}},
        "shadow": {"model": "scorer", "rollout": SHADOW},
        "plain": {"model": "scorer"},
        "serverless-shadow": {"model": "scorer", "mode": "serverless", "rollout": SHADOW},
    }, platform=GATEWAY)


def test_gateway_splits_ab_by_weight_and_mirrors_the_shadow(routed):
    ab = routed.named("HTTPRoute", "ab")
    assert ab["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io",
                                         "kind": "Gateway", "name": "public",
                                         "namespace": "edge"}]
    (rule,) = ab["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/ab"}}]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [
        ("ab-control", 90), ("ab-treatment", 10)]
    # no router, and the variants' Services exist for the route's backends
    assert not routed.of_kind("Deployment") or all(
        d["metadata"]["name"] != "ab-router" for d in routed.of_kind("Deployment"))
    assert {s["metadata"]["name"] for s in routed.of_kind("Service")} >= {
        "ab-control", "ab-treatment", "shadow-shadow"}

    (rule,) = routed.named("HTTPRoute", "shadow")["spec"]["rules"]
    assert [b["name"] for b in rule["backendRefs"]] == ["shadow"]
    mirror = next(f["requestMirror"] for f in rule["filters"] if f["type"] == "RequestMirror")
    assert mirror == {"backendRef": {"group": "", "kind": "Service", "name": "shadow-shadow",
                                     "port": 8080}, "percent": 30}
    # the gateway mirrors: the primary must not copy requests a second time
    data = routed.named("ConfigMap", "shadow-serve")["data"]
    assert json.loads(data["primary.json"])["mirror"] is None
    # ...and the shadow accepts the gateway's mirror, not the primary's pods
    (ingress,) = routed.named("NetworkPolicy", "shadow-shadow-ingress")["spec"]["ingress"]
    assert ingress["from"][0] == {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "edge"}}}


def test_a_sticky_key_sends_the_gateway_to_the_router(routed):
    (rule,) = routed.named("HTTPRoute", "sticky")["spec"]["rules"]
    assert [b["name"] for b in rule["backendRefs"]] == ["sticky"]
    assert routed.named("Service", "sticky")["spec"]["selector"]["mlc.dev/role"] == "router"
    settings = json.loads(routed.named("ConfigMap", "sticky-serve")["data"]["router.json"])
    assert settings["assignment"] == {"header": "x-user-id"}
    # variants take the router's requests
    (ingress,) = routed.named("NetworkPolicy", "sticky-control-ingress")["spec"]["ingress"]
    router_pods = routed.named("Deployment", "sticky-router")["spec"]["selector"]
    assert {"podSelector": router_pods} in ingress["from"]


def test_routes_match_the_gateway_api_crd(routed):
    routes = routed.of_kind("HTTPRoute")
    assert {r["metadata"]["name"] for r in routes} == {"ab", "sticky", "shadow", "plain"}
    for route in routes:
        assert _route_errors(route) == [], route["metadata"]["name"]
        assert route_prefix(routed.project.endpoints[route["metadata"]["name"]]) == \
            route["spec"]["rules"][0]["matches"][0]["path"]["value"]


def test_serverless_endpoints_keep_their_own_routing_and_say_so(routed):
    assert [d.code for d in routed.diagnostics if d.severity == Severity.WARNING
            and d.code == GATEWAY_UNUSED] == [GATEWAY_UNUSED]
    data = routed.named("ConfigMap", "serverless-shadow-serve")["data"]
    assert json.loads(data["primary.json"])["mirror"]["url"].startswith(
        "http://serverless-shadow-shadow.")


def test_the_router_is_a_small_hardened_deployment(tmp_path):
    built = build(tmp_path, {"ab": {"model": "scorer", "hardware": "t4", "rollout": {
        **AB, "assignment": {"field": "user_id"},
        "router": {"replicas": 3, "hardware": "cpu-small", "timeout": "5s"}}}})
    router = built.named("Deployment", "ab-router")
    pod = router["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert router["spec"]["replicas"] == 3
    # the variants run on the GPU profile; the router never asks for one
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert [e["name"] for e in container["env"]] == [
        "HOME", "MLC_DRAIN_SECONDS", "MLC_ENDPOINT_CONFIG", "MLC_SHUTDOWN_TIMEOUT_SECONDS"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    settings = json.loads(built.named("ConfigMap", "ab-serve")["data"]["router.json"])
    assert settings["assignment"] == {"field": "user_id"} and settings["timeout_seconds"] == 5.0
    for obj in built.objects():
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("n, share, floor, expected", [
    (1, 5, 1, 1), (20, 5, 1, 1), (20, 95, 1, 19), (0, 50, 0, 0), (4, 0, 1, 0)])
def test_replicas_for_share(n, share, floor, expected):
    assert replicas_for_share(n, share, floor) == expected


def test_kserve_raw_ab_is_allowed_where_the_pods_match_the_weights(tmp_path):
    built = build(tmp_path, {"ab": {"model": "scorer", "kserve": True, "replicas": 20,
                                    "rollout": {"strategy": "ab", "variants": [
                                        {"name": "a", "weight": 95},
                                        {"name": "b", "weight": 5}]}}})
    assert built.project.endpoints["ab"].rollout.traffic == "pods"
    assert not built.diagnostics.has_errors()


# --- the gate queries, evaluated by the real promtool ------------------------------------------

@pytest.mark.slow
def test_shadow_and_router_queries_compute_what_they_say(tmp_path):
    from mlc.compiler.backends.serving import shadow_queries as q

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-system-deps.sh installs it)")

    built = build(tmp_path / "p", {"fraud": {"model": "scorer", "rollout": SHADOW}})
    project, ep = built.project, built.project.endpoints["fraud"]
    ns = project.platform.namespace
    where = f'namespace="{ns}", endpoint="fraud"'

    def series(name: str, values: str, **labels: str) -> dict:
        extra = "".join(f', {k}="{v}"' for k, v in sorted(labels.items()))
        return {"series": f"{name}{{{where}, pod=\"p1\"{extra}}}", "values": values}

    # per minute: 100 compared, 90 agreed; 95 answered 200 and 5 failed; 98 sent, 2 dropped;
    # the shadow's answers: 50 under 10 ms, all 100 under 50 ms; the router: 90 / 10
    inputs = [
        series("mlc_shadow_compared_total", "0+100x10"),
        series("mlc_shadow_agreed_total", "0+90x10"),
        series("mlc_shadow_responses_total", "0+95x10", code="200"),
        series("mlc_shadow_responses_total", "0+5x10", code="error"),
        series("mlc_shadow_mirrored_total", "0+98x10"),
        series("mlc_shadow_dropped_total", "0+2x10", reason="queue_full"),
        series("mlc_shadow_dropped_total", "0+0x10", reason="shutdown"),
        *[series("mlc_shadow_duration_seconds_bucket", f"0+{n}x10", le=le)
          for le, n in (("0.005", 0), ("0.01", 50), ("0.025", 80), ("0.05", 100),
                        ("+Inf", 100))],
        series("mlc_router_requests_total", "0+90x10", variant="control", code="200"),
        series("mlc_router_requests_total", "0+10x10", variant="treatment", code="200"),
    ]
    same = f"{{{where}}}"
    tests = [
        (q.agreement_ratio(project, ep, "5m"), [(same, 0.9)]),
        (q.shadow_error_ratio(project, ep, "5m"), [(same, 0.05)]),
        (q.dropped_ratio(project, ep, "5m"), [(same, 0.02)]),
        # between 0.025 and 0.05: 80 of 100 below the lower bound, linear inside the bucket
        (q.shadow_latency_quantile(project, ep, 0.9, "5m"), [(same, 0.0375)]),
        (q.variant_share(project, ep, "5m"), [(f'{{{where}, variant="control"}}', 0.9),
                                              (f'{{{where}, variant="treatment"}}', 0.1)]),
    ]
    # rounded: promtool compares floats exactly, and rates carry rounding error
    doc = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": inputs,
        "promql_expr_test": [{"expr": f"round(\n{expr}\n, 0.0001)", "eval_time": "10m",
                              "exp_samples": [{"labels": labels, "value": value}
                                              for labels, value in expected]}
                             for expr, expected in tests]}]}
    path = tmp_path / "shadow_test.yaml"
    path.write_text(json.dumps(doc))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # and the check can fail: a wrong expectation is reported
    doc["tests"][0]["promql_expr_test"][0]["exp_samples"][0]["value"] = 0.8
    path.write_text(json.dumps(doc))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "agreed" in result.stdout + result.stderr


def test_a_variant_named_like_the_router_is_refused(tmp_path):
    from mlc.compiler.pipeline import check_environment
    from mlc.compiler.resolve.context import NAME_CLASH

    from .conftest import write_project
    from .test_serving import project_text

    write_project(tmp_path, {"ml.yaml": project_text({"ab": {"model": "scorer", "rollout": {
        "strategy": "ab", "variants": [{"name": "router", "weight": 50},
                                       {"name": "b", "weight": 50}]}}})})
    diags = Diagnostics()
    check_environment(tmp_path, "default", diags)
    assert [d.code for d in diags if d.severity == Severity.ERROR] == [NAME_CLASH]


def test_an_assignment_outside_ab_is_reported_as_ignored(tmp_path):
    from mlc.compiler.resolve.context import WRONG_KIND

    built = build(tmp_path, {"s": {"model": "scorer", "rollout": {
        **SHADOW, "assignment": {"header": "x-user-id"}}}})
    warned = [d.code for d in built.diagnostics if d.severity == Severity.WARNING]
    assert [c for c in warned if c != "MLC343"] == [WRONG_KIND]  # MLC343: arms serve aliases
