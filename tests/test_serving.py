"""The serving backend: what a cluster needs to serve each endpoint, checked like a cluster would.

Small projects (ml.yaml written to tmp_path) cover each mode and rollout strategy; every core
object must pass kubernetes-validate in strict mode for the three newest Kubernetes versions it
ships, every custom resource the upstream CRD schema (unknown fields are errors), and every
pod the security defaults of the issue.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate import utils as kv_utils

from mlc.compiler.backends import serving
from mlc.compiler.backends.serving.autoscaling import RPS_METRIC
from mlc.compiler.diagnostics import Diagnostics, Severity
from mlc.compiler.ir import ResolvedProject
from mlc.compiler.pipeline import check_environment
from mlc.compiler.render import render
from mlc.compiler.resolve.knative import KNATIVE_FLAG_OFF
from mlc.compiler.resolve.serving import SCALE_TO_ZERO_GPU

from . import schema_check
from .conftest import ROOT, write_project

DIGEST = "@sha256:" + "ab" * 32
BASE: dict[str, Any] = {
    "apiVersion": "mlc.dev/v1",
    "kind": "Project",
    "metadata": {"name": "scoring", "version": "2.0.0", "team": "risk"},
    "images": {role: f"registry.example.com/mlc-{role}:0.1.0{DIGEST}"
               for role in ("train", "serve", "drift")},
    "hardware": {"cpu-small": {"cpu": "500m", "memory": "1Gi"},
                 "t4": {"cpu": "4", "memory": "16Gi", "gpu": {"type": "Tesla-T4", "count": 1}}},
    "sources": {"events": {
        "type": "file", "path": "s3://bucket/events/", "timestampField": "ts",
        "columns": [{"name": "user_id", "type": "int64", "nullable": False},
                    {"name": "ts", "type": "unix_timestamp", "nullable": False},
                    {"name": "amount", "type": "float64"}, {"name": "label", "type": "int64"}]}},
    "entities": {"user": {"joinKey": "user_id"}},
    "features": {"user_stats": {"entities": ["user"], "source": "events",
                                "fields": [{"name": "amount", "type": "float64"}]}},
    "models": {"scorer": {"task": "classification", "inputs": {"features": ["user_stats"]},
                          "label": {"source": "events", "column": "label"}}},
}

# One endpoint per mode and strategy; `suite` compiles them all into one project.
ENDPOINTS: dict[str, dict[str, Any]] = {
    "canary": {
        "model": "scorer", "hardware": "cpu-small",
        "autoscaling": {"minReplicas": 2, "maxReplicas": 6, "metric": "rps", "target": 50},
        "rollout": {"strategy": "canary",
                    "steps": [{"weight": 20, "pause": "2m"}, {"weight": 60}],
                    "gates": {"maxLatencyP99": "250ms", "maxErrorRate": 0.02,
                              "maxPredictionDrift": 0.1, "interval": "30s",
                              "failureLimit": 2}},
        "allowFrom": [{"namespace": "payments"}, {"podLabels": {"app": "checkout"}},
                      {"namespace": "web", "podLabels": {"tier": "front"}}]},
    "bluegreen": {"model": "scorer", "rollout": {"strategy": "blueGreen", "autoPromote": True}},
    "shadow": {"model": "scorer", "replicas": 4,
               "rollout": {"strategy": "shadow", "shadow": {"alias": "challenger",
                                                           "percent": 25}}},
    "ab": {"model": "scorer", "autoscaling": {"minReplicas": 2, "maxReplicas": 10},
           "rollout": {"strategy": "ab", "variants": [
               {"name": "control", "weight": 80},
               {"name": "treatment", "alias": "challenger", "weight": 20}]}},
    "serverless": {"model": "scorer", "mode": "serverless",
                   "autoscaling": {"minReplicas": 0, "maxReplicas": 5, "metric": "concurrency",
                                   "target": 8},
                   "rollout": {"strategy": "canary", "steps": [{"weight": 10, "pause": "1m"},
                                                               {"weight": 50, "pause": "4m"}]}},
    "serverless-ab": {"model": "scorer", "mode": "serverless", "rollout": {
        "strategy": "ab", "variants": [{"name": "a", "weight": 30},
                                       {"name": "b", "version": 3, "weight": 70}]}},
    "serverless-shadow": {"model": "scorer", "mode": "serverless",
                          "rollout": {"strategy": "shadow", "shadow": {"version": 7}}},
    "kserve": {"model": "scorer", "kserve": True, "autoscaling": {"metric": "rps", "target": 30}},
    "kserve-cpu": {"model": "scorer", "kserve": True},
    "kserve-serverless": {"model": "scorer", "kserve": True, "mode": "serverless"},
    "kserve-ab": {"model": "scorer", "kserve": True, "mode": "serverless", "rollout": {
        "strategy": "ab", "variants": [{"name": "x", "weight": 60}, {"name": "y", "weight": 40}]}},
    "gpu": {"model": "scorer", "hardware": "t4", "mode": "serverless",
            "autoscaling": {"minReplicas": 1, "maxReplicas": 2}},
    "gpu-online": {"model": "scorer", "hardware": "t4"},
    "batch": {"model": "scorer", "mode": "batch",
              "batch": {"schedule": "0 4 * * *", "input": "events", "output": "s3://b/scores/"}},
}

CRDS = {
    ("argoproj.io/v1alpha1", "Rollout"): "argo-rollouts/rollout-crd.yaml",
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): "argo-rollouts/analysis-template-crd.yaml",
    ("argoproj.io/v1alpha1", "Application"): "argo-cd/application-crd.yaml",
    ("argoproj.io/v1alpha1", "Workflow"): "argo-workflows/argoproj.io_workflows.yaml",
    ("serving.knative.dev/v1", "Service"): "knative-serving/service.yaml",
    ("serving.knative.dev/v1", "Configuration"): "knative-serving/configuration.yaml",
    ("serving.knative.dev/v1", "Route"): "knative-serving/route.yaml",
    ("serving.kserve.io/v1beta1", "InferenceService"):
        "kserve/serving.kserve.io_inferenceservices.yaml",
}
# What the serverless GPU endpoints' node selector and tolerations need (MLC345).
KNATIVE_GPU_FLAGS = {"knative": {"features": ["kubernetes.podspec-nodeselector",
                                              "kubernetes.podspec-tolerations"]}}
# The three newest Kubernetes minor versions kubernetes-validate ships schemas for.
K8S_VERSIONS = sorted({kv_utils.major_minor(v) for v in kv_utils.all_versions()},
                      key=lambda v: tuple(int(x) for x in v.split(".")))[-3:]


@dataclass
class Built:
    project: ResolvedProject
    diagnostics: Diagnostics
    files: dict[str, list[dict[str, Any]]]  # serving backend output: path -> documents

    def objects(self) -> list[dict[str, Any]]:
        return [doc for path in sorted(self.files) for doc in self.files[path]]

    def of_kind(self, kind: str, api_version: str | None = None) -> list[dict[str, Any]]:
        return [o for o in self.objects() if o["kind"] == kind
                and (api_version is None or o["apiVersion"] == api_version)]

    def named(self, kind: str, name: str, api_version: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind, api_version) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
        return found[0]


def project_text(serving_section: dict, platform: dict | None = None,
                 extra: dict | None = None) -> str:
    doc = copy.deepcopy(BASE)
    doc["serving"] = serving_section
    if platform:
        doc["platform"] = platform
    doc.update(extra or {})
    return json.dumps(doc, indent=2)  # JSON is YAML 1.2


def diagnostic_paths(folder: Path, serving_section: dict, platform: dict | None = None
                     ) -> dict[str, list[str]]:
    """The codes a project with `serving_section` gets, each with the fields it names; the
    unpinned-alias warning (MLC343), which every such project gets, left out."""
    write_project(folder, {"ml.yaml": project_text(serving_section, platform)})
    diags = Diagnostics()
    check_environment(folder, "default", diags)
    out: dict[str, list[str]] = {}
    for d in diags.items:
        if d.code != "MLC343":
            out.setdefault(d.code, []).append(d.dotted_path)
    return out


def build(folder: Path, serving_section: dict, *, platform: dict | None = None,
          extra: dict | None = None, env: str = "default", overlay: dict | None = None,
          header: str = "") -> Built:
    files = {"ml.yaml": header + project_text(serving_section, platform, extra)}
    if overlay is not None:
        files[f"environments/{env}.yaml"] = json.dumps(overlay)
    write_project(folder, files)
    diags = Diagnostics()
    project = check_environment(folder, env, diags)
    assert project is not None, [str(d.message) for d in diags]
    return Built(project, diags, emitted(project))


def emitted(project: ResolvedProject) -> dict[str, list[dict[str, Any]]]:
    return {f.path: list(f.content) if isinstance(f.content, list) else [f.content]
            for f in serving.emit(project)}


def example(env: str) -> Built:
    diags = Diagnostics()
    project = check_environment(ROOT, env, diags)
    assert project is not None
    return Built(project, diags, emitted(project))


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("suite"), ENDPOINTS, platform=KNATIVE_GPU_FLAGS)


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod spec(s) inside a workload object, whatever its form."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind in ("Deployment", "Rollout") or (kind in ("Service", "Configuration")
                                             and "template" in spec):
        return [spec["template"]["spec"]]
    if kind == "InferenceService":
        return [spec["predictor"]]
    return []


# ---------------------------------------------------------------------------------------
# Validity


@pytest.mark.slow
def test_core_objects_validate_strictly_on_the_three_newest_kubernetes(suite):
    assert len(K8S_VERSIONS) == 3
    objects = suite.objects() + example("dev").objects() + example("prod").objects()
    core = [o for o in objects if (o["apiVersion"], o["kind"]) not in CRDS]
    assert {o["kind"] for o in core} >= {"Deployment", "Service", "HorizontalPodAutoscaler",
                                         "PodDisruptionBudget", "NetworkPolicy",
                                         "ServiceAccount", "ConfigMap"}
    for obj in core:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.slow
def test_custom_resources_match_the_upstream_schemas(suite):
    kinds = set()
    for obj in suite.objects() + example("prod").objects():
        key = (obj["apiVersion"], obj["kind"])
        if key not in CRDS:
            continue
        kinds.add(key)
        assert schema_check.check_crd(obj, CRDS[key]) == [], obj["metadata"]["name"]
        # CRD schemas leave metadata open; the API server checks it as for any object
        meta_only = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}
        kubernetes_validate.validate(meta_only, K8S_VERSIONS[-1], strict=True)
    assert kinds == set(CRDS) - {("argoproj.io/v1alpha1", "Application")}


def test_pods_inside_custom_resources_are_valid_pods(suite):
    """Rollouts, Knative and KServe embed a pod; it must be one Kubernetes accepts too."""
    kserve_only = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "autoScaling",
                   "labels", "annotations"}
    checked = 0
    for obj in suite.objects():
        if obj["kind"] == "Deployment":
            continue
        for spec in pod_specs(obj):
            pod = copy.deepcopy({k: v for k, v in spec.items() if k not in kserve_only})
            for c in pod["containers"]:
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    # Knative probes the container's one port when none is given
                    c[probe]["httpGet"].setdefault("port", c["ports"][0]["containerPort"])
            deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": "x"},
                          "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                              "metadata": {"labels": {"a": "b"}}, "spec": pod}}}
            kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
            checked += 1
    assert checked >= 8


def test_output_is_deterministic(tmp_path):
    first = build(tmp_path / "a", ENDPOINTS, platform=KNATIVE_GPU_FLAGS)
    second = build(tmp_path / "b", ENDPOINTS, platform=KNATIVE_GPU_FLAGS)
    assert render(serving.emit(first.project)) == render(serving.emit(second.project))


# ---------------------------------------------------------------------------------------
# Security defaults and metadata, on every object


def test_every_pod_is_locked_down(suite):
    pods = [(o["metadata"]["name"], s) for o in suite.objects() for s in pod_specs(o)]
    assert len(pods) >= 15
    for name, pod in pods:
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"]:
            # what the container runs with: its own settings over the pod's
            sc = {**pod.get("securityContext", {}), **c["securityContext"]}
            assert sc["runAsNonRoot"] is True, name
            assert sc["runAsUser"] > 0 and sc["runAsGroup"] > 0, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert c["resources"]["requests"] and c["resources"]["limits"], name
            assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready", name
            assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live", name
            assert "@sha256:" in c["image"] and c["imagePullPolicy"] == "IfNotPresent", name
            for var in c["env"]:
                assert set(var) <= {"name", "value", "valueFrom"}
        mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert {"/etc/mlc", "/tmp"} <= mounts, name  # read-only root: /tmp is an emptyDir


def test_knative_pods_use_only_fields_a_default_install_accepts(suite):
    """Knative's webhook refuses a pod-level securityContext unless the feature flag
    `kubernetes.podspec-securitycontext` is on (off by default), and `privileged` always."""
    knative = [o for o in suite.objects()
               if o["apiVersion"] == "serving.knative.dev/v1" and pod_specs(o)]
    knative += [o for o in suite.of_kind("InferenceService") if o["metadata"][
        "annotations"]["serving.kserve.io/deploymentMode"] == "Knative"]
    assert len(knative) >= 6
    for obj in knative:
        for pod in pod_specs(obj):
            assert "securityContext" not in pod, obj["metadata"]["name"]
            sc = pod["containers"][0]["securityContext"]
            assert "privileged" not in sc, obj["metadata"]["name"]
            assert sc["runAsGroup"] == sc["runAsUser"] == 10001
    online = suite.named("Deployment", "gpu-online")["spec"]["template"]["spec"]
    assert online["securityContext"]["fsGroup"] == 10001  # elsewhere the pod keeps its own


def test_service_accounts_mount_no_token(suite):
    accounts = suite.of_kind("ServiceAccount")
    # but the delivery workflow's, whose resource steps patch the endpoint's one object
    delivery = {a["metadata"]["name"] for a in accounts
                if a["automountServiceAccountToken"] is True}
    assert delivery == {"serverless-delivery"}
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts
                            if a["metadata"]["name"] not in delivery)


def test_every_object_is_labelled_and_names_its_source(suite):
    for obj in suite.objects():
        meta = obj["metadata"]
        labels = meta["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "mlc"
        assert labels["app.kubernetes.io/part-of"] == "scoring"
        assert labels["app.kubernetes.io/version"] == "2.0.0"
        assert labels["app.kubernetes.io/name"]
        assert meta["annotations"]["mlc.dev/source"].startswith("ml.yaml#serving.")


def test_a_mutable_tag_only_where_the_environment_allows_it():
    dev, prod = example("dev"), example("prod")
    dev_pod = dev.named("Deployment", "fraud-api")["spec"]["template"]["spec"]
    prod_pod = prod.named("Rollout", "fraud-api")["spec"]["template"]["spec"]
    assert dev_pod["containers"][0]["image"] == "ghcr.io/mlc-dev/mlc-serve:0.1.0"
    assert dev_pod["containers"][0]["imagePullPolicy"] == "Always"  # the tag moves
    assert "@sha256:" in prod_pod["containers"][0]["image"]


def test_secrets_are_passed_by_reference_only(tmp_path):
    built = build(tmp_path, {"api": {"model": "scorer"}},
                  platform={"mlflow": {"credentialsSecret": "mlflow-token"}},
                  extra={"secrets": {"mlflow-token": {"kubernetes": {"name": "mlflow",
                                                                     "key": "token"}}}})
    pod = built.named("Deployment", "api")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_TOKEN"] == {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": "mlflow", "key": "token"}}}


# ---------------------------------------------------------------------------------------
# Online mode


def test_online_endpoint_of_the_example():
    prod = example("prod")
    rollout = prod.named("Rollout", "fraud-api")
    pod = rollout["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["serve", "--project", "/etc/mlc/project.json",
                                 "--endpoint", "fraud-api"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == prod.project.platform.mlflow_tracking_uri
    assert env["MLC_ENDPOINT_CONFIG"] == "/etc/mlc/endpoint.json"
    assert pod["serviceAccountName"] == "fraud-api-serve"
    assert [t["topologyKey"] for t in pod["topologySpreadConstraints"]] == [
        "topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert "replicas" not in rollout["spec"]  # the autoscaler owns it

    hpa = prod.named("HorizontalPodAutoscaler", "fraud-api")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                                     "name": "fraud-api"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert hpa["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "mlc_requests_per_second"},
        "target": {"type": "AverageValue", "averageValue": "200"}}}]
    assert RPS_METRIC == "mlc_requests_per_second"

    pdb = prod.named("PodDisruptionBudget", "fraud-api")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == rollout["spec"]["selector"]["matchLabels"]

    service = prod.named("Service", "fraud-api")["spec"]
    assert service["selector"] == rollout["spec"]["selector"]["matchLabels"]
    assert service["ports"][0]["targetPort"] == "http"

    settings = json.loads(prod.named("ConfigMap", "fraud-api-serve")["data"]["primary.json"])
    assert settings["model_uri"] == "models:/fraud-classifier@champion"
    assert settings["prediction_log"] == {
        "sample": 0.1,
        "uri": "s3://fraud-ml-artifacts/prod/fraud-detection/prod/predictions/fraud-api"}
    assert settings["mirror"] is None
    volume = pod["volumes"][0]["projected"]["sources"]
    assert volume[0]["configMap"]["name"] == "fraud-detection-config"  # project.json
    assert volume[1]["configMap"] == {"name": "fraud-api-serve", "items": [
        {"key": "primary.json", "path": "endpoint.json"}]}


def test_network_policy_denies_all_but_clients_and_prometheus(suite):
    policy = suite.named("NetworkPolicy", "canary-ingress")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"]["mlc.dev/role"] == "primary"
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "payments"}}},
        {"podSelector": {"matchLabels": {"app": "checkout"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "web"}},
         "podSelector": {"matchLabels": {"tier": "front"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
    ]
    # no allowFrom: Prometheus only
    (only,) = suite.named("NetworkPolicy", "bluegreen-ingress")["spec"]["ingress"]
    assert [p["namespaceSelector"]["matchLabels"] for p in only["from"]] == [
        {"kubernetes.io/metadata.name": "monitoring"}]


def test_hpa_on_cpu(suite):
    hpa = suite.named("HorizontalPodAutoscaler", "bluegreen")["spec"]
    assert hpa["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]


def test_gpu_endpoint_is_scheduled_from_the_hardware_profile(suite):
    pod = suite.named("Deployment", "gpu-online")["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        pod["tolerations"]
    knative = suite.named("Service", "gpu", "serving.knative.dev/v1")
    assert knative["spec"]["template"]["spec"]["nodeSelector"] == pod["nodeSelector"]


def test_fixed_replicas_have_no_autoscaler(suite):
    primary = suite.named("Deployment", "shadow")
    assert primary["spec"]["replicas"] == 4
    names = {h["metadata"]["name"] for h in suite.of_kind("HorizontalPodAutoscaler")}
    assert not names & {"shadow", "shadow-shadow"}


# ---------------------------------------------------------------------------------------
# Shadow and A/B


def test_shadow_gets_mirrored_traffic_and_never_answers_clients(suite):
    primary = suite.named("Deployment", "shadow")
    shadow = suite.named("Deployment", "shadow-shadow")
    assert shadow["spec"]["replicas"] == 1  # 25 % of 4 replicas' traffic
    shadow_labels = shadow["spec"]["template"]["metadata"]["labels"]
    assert shadow_labels["mlc.dev/role"] == "shadow"
    # the endpoint's Service selects the primary only; the shadow has its own address
    live = suite.named("Service", "shadow")["spec"]["selector"]
    assert live["mlc.dev/role"] == "primary"
    assert suite.named("Service", "shadow-shadow")["spec"]["selector"]["mlc.dev/role"] == \
        "shadow"
    # and accepts connections only from the primary's pods (and Prometheus)
    (rule,) = suite.named("NetworkPolicy", "shadow-shadow-ingress")["spec"]["ingress"]
    assert rule["from"][0] == {"podSelector": {
        "matchLabels": primary["spec"]["selector"]["matchLabels"]}}
    assert len(rule["from"]) == 2
    data = suite.named("ConfigMap", "shadow-serve")["data"]
    primary_settings, shadow_settings = (json.loads(data["primary.json"]),
                                         json.loads(data["shadow.json"]))
    assert primary_settings["mirror"] == {
        "url": "http://shadow-shadow.scoring-default.svc.cluster.local:8080", "percent": 25,
        "task": "classification", "tolerance": 0.01, "max_queue": 1000, "timeout_seconds": 1.0}
    assert shadow_settings["model_uri"] == "models:/scorer@challenger"
    assert shadow_settings["mirror"] is None
    assert shadow_settings["prediction_log"]["sample"] == 1.0  # every answer is logged...
    assert shadow_settings["prediction_log"]["uri"].endswith("/predictions/shadow-shadow")
    assert shadow_settings["metrics_endpoint"] == "shadow-shadow"  # ...apart from the SLOs


def test_serverless_shadow_is_a_cluster_local_knative_service(suite):
    shadow = suite.named("Service", "serverless-shadow-shadow", "serving.knative.dev/v1")
    assert shadow["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    data = suite.named("ConfigMap", "serverless-shadow-serve")["data"]
    assert json.loads(data["primary.json"])["mirror"]["url"] == \
        "http://serverless-shadow-shadow.scoring-default.svc.cluster.local"
    assert json.loads(data["shadow.json"])["model_uri"] == "models:/scorer/7"


def test_online_ab_is_split_by_the_router_and_sized_by_weight(suite):
    control = suite.named("HorizontalPodAutoscaler", "ab-control")["spec"]
    treatment = suite.named("HorizontalPodAutoscaler", "ab-treatment")["spec"]
    assert (control["minReplicas"], control["maxReplicas"]) == (2, 8)
    assert (treatment["minReplicas"], treatment["maxReplicas"]) == (1, 2)
    # the endpoint's address is the router's, which splits by weight, not by pod count
    live = suite.named("Service", "ab")["spec"]["selector"]
    assert live["mlc.dev/role"] == "router" and "mlc.dev/variant" not in live
    router = suite.named("Deployment", "ab-router")["spec"]
    assert router["template"]["spec"]["containers"][0]["args"] == ["route", "--endpoint", "ab"]
    data = suite.named("ConfigMap", "ab-serve")["data"]
    settings = json.loads(data["router.json"])
    assert [(v["name"], v["weight"], v["url"]) for v in settings["variants"]] == [
        ("control", 80, "http://ab-control.scoring-default.svc.cluster.local:8080"),
        ("treatment", 20, "http://ab-treatment.scoring-default.svc.cluster.local:8080")]
    assert json.loads(data["variant-treatment.json"])["model_uri"] == \
        "models:/scorer@challenger"
    assert json.loads(data["variant-control.json"])["model_uri"] == "models:/scorer@champion"


def test_serverless_ab_is_an_exact_knative_traffic_split(suite):
    route = suite.named("Route", "serverless-ab")["spec"]["traffic"]
    assert route == [
        {"configurationName": "serverless-ab-a", "percent": 30, "tag": "a"},
        {"configurationName": "serverless-ab-b", "percent": 70, "tag": "b"}]
    assert {c["metadata"]["name"] for c in suite.of_kind("Configuration")} == {
        "serverless-ab-a", "serverless-ab-b"}


# ---------------------------------------------------------------------------------------
# Serverless, KServe, batch


def test_serverless_scales_on_concurrency_to_zero(suite):
    knative = suite.named("Service", "serverless", "serving.knative.dev/v1")
    notes = knative["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in notes.items() if k.startswith("autoscaling.knative.dev/")} == {
        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/metric": "concurrency",
        "autoscaling.knative.dev/target": "8",
        "autoscaling.knative.dev/min-scale": "0",
        "autoscaling.knative.dev/max-scale": "5"}
    assert knative["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    container = knative["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    # Knative's webhook refuses these
    assert "lifecycle" not in container
    assert "topologySpreadConstraints" not in knative["spec"]["template"]["spec"]
    assert not [o for o in suite.of_kind("Deployment") if o["metadata"]["name"] == "serverless"]


def _gpu_serverless(min_replicas: int, provisioning: str) -> dict[str, Any]:
    return {"serving": {"gpu": {"model": "scorer", "hardware": "t4", "mode": "serverless",
                                "autoscaling": {"minReplicas": min_replicas,
                                                "maxReplicas": 2}}},
            "platform": {"gpuNodeProvisioning": provisioning, **KNATIVE_GPU_FLAGS}}


@pytest.mark.parametrize("features", [[], ["kubernetes.podspec-nodeselector"]])
def test_knative_refuses_gpu_scheduling_without_its_feature_flags(tmp_path, features):
    case = _gpu_serverless(1, "static")
    write_project(tmp_path, {"ml.yaml": project_text(
        case["serving"], {"knative": {"features": features}})})
    diags = Diagnostics()
    assert check_environment(tmp_path, "default", diags) is None
    [error] = [d for d in diags.errors if d.code == KNATIVE_FLAG_OFF]
    assert error.dotted_path == "serving.gpu.hardware"
    assert "kubernetes.podspec-tolerations" in error.message
    assert ("kubernetes.podspec-nodeselector" in error.message) == (not features)


@pytest.mark.parametrize(("min_replicas", "provisioning", "warned"), [
    (0, "autoscaled", True), (1, "autoscaled", False), (0, "static", False)])
def test_gpu_scale_to_zero_on_provisioned_nodes_warns(tmp_path, min_replicas, provisioning,
                                                      warned):
    case = _gpu_serverless(min_replicas, provisioning)
    built = build(tmp_path, case["serving"], platform=case["platform"])
    found = [d for d in built.diagnostics if d.code == SCALE_TO_ZERO_GPU]
    assert bool(found) == warned
    if warned:
        assert found[0].severity == Severity.WARNING
        assert found[0].dotted_path.endswith("minReplicas")
        assert found[0].span is not None and found[0].span.file == "ml.yaml"


def test_gpu_scale_to_zero_warning_from_mlc_validate(tmp_path):
    import subprocess
    import sys

    case = _gpu_serverless(0, "autoscaled")
    write_project(tmp_path, {"ml.yaml": project_text(case["serving"], case["platform"])})
    result = subprocess.run([sys.executable, "-m", "mlc", "validate", "-C", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr  # a warning, not an error
    assert SCALE_TO_ZERO_GPU in result.stdout + result.stderr


def test_kserve_serves_instead_of_deployments(suite):
    names = {o["metadata"]["name"] for o in suite.of_kind("Deployment")}
    names |= {o["metadata"]["name"] for o in suite.of_kind("Service", "serving.knative.dev/v1")}
    assert not names & {"kserve", "kserve-cpu", "kserve-serverless", "kserve-ab-x"}
    standard = suite.named("InferenceService", "kserve")
    assert standard["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    predictor = standard["spec"]["predictor"]
    assert predictor["containers"][0]["name"] == "kserve-container"
    assert predictor["labels"]["mlc.dev/role"] == "primary"
    query = predictor["autoScaling"]["metrics"][0]["external"]["metric"]["query"]
    # KEDA scales on the requests the model serves: a scanner's 404s must not add replicas
    assert "mlc_requests_total" in query and 'route!="unmatched"' in query, query
    cpu = suite.named("InferenceService", "kserve-cpu")
    assert cpu["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    assert cpu["spec"]["predictor"]["scaleMetric"] == "cpu"
    knative = suite.named("InferenceService", "kserve-serverless")
    assert knative["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    # Standard mode pods are plain pods: mlc's policies select them by the predictor's labels
    policy = suite.named("NetworkPolicy", "kserve-ingress")["spec"]["podSelector"]
    assert policy["matchLabels"].items() <= predictor["labels"].items()
    route = suite.named("Route", "kserve-ab")["spec"]["traffic"]
    assert [t["configurationName"] for t in route] == ["kserve-ab-x-predictor",
                                                      "kserve-ab-y-predictor"]


def test_batch_endpoint_gets_only_the_configuration_it_reads(suite):
    batch = [path for path in suite.files if path.endswith("-batch.yaml")]
    assert batch == ["serving/configmap-batch.yaml"]
    settings = json.loads(suite.named("ConfigMap", "batch-serve")["data"]["batch.json"])
    assert settings["model_uri"] == "models:/scorer@champion"


def test_config_hash_rolls_pods_only_when_settings_change(tmp_path):
    def pod_hash(built: Built) -> str:
        template = built.named("Deployment", "api")["spec"]["template"]
        return template["metadata"]["annotations"]["mlc.dev/config-hash"]

    base = {"api": {"model": "scorer"}}
    same = build(tmp_path / "a", base)
    moved = build(tmp_path / "b", base, header="# the same project, two lines lower\n\n")
    batching = build(tmp_path / "c", {"api": {"model": "scorer", "batching": {
        "maxBatchSize": 8}}})
    assert pod_hash(same) == pod_hash(moved)
    assert pod_hash(same) != pod_hash(batching)
