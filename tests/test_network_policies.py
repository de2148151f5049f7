"""Every pod of every compiled tree (the example's environments and the golden projects) under
the environment's NetworkPolicies: the flows it needs are allowed, unrelated ones denied.

Pods are taken from the tree as the cluster would make them: a Deployment's or Rollout's
template, a Knative Service's revision, a KServe predictor, each Argo step (with the label
Argo puts on it), each JobSet worker, the Argo Events pods, and the pods that are not ours but
live in the namespace and take part (the EventBus, the Pushgateway). tests/netpol.py decides.
"""

from __future__ import annotations

import ipaddress
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlc.compiler.backends.argo.distributed import JOBSET_NAME_LABEL, MASTER_PORT
from mlc.compiler.backends.network import (
    ARGO_WORKFLOW_LABEL,
    EVENTBUS_LABEL,
    EVENTSOURCE_LABEL,
    SENSOR_LABEL,
)
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project

from .netpol import Address, Pod, allowed
from .test_golden import PROJECTS

OUTSIDE = Address("203.0.113.7")  # TEST-NET-3: nobody's store


@cache
def trees() -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    out = []
    for name in sorted(PROJECTS):
        for c in compile_project(PROJECTS[name], None, Diagnostics()):
            objs = [d for path in sorted(c.files) if path.endswith(".yaml")
                    and not path.startswith("argocd/")
                    for d in yaml.safe_load_all(c.files[path]) if isinstance(d, dict)
                    and "kind" in d and d["kind"] != "Kustomization"]
            out.append((f"{name}/{c.env}", objs, c.project.model_dump(mode="json")))
    return out


def _ports(containers: list[dict[str, Any]]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in containers for p in c.get("ports") or []
            if "name" in p}


def _workflow_pods(wf: dict[str, Any], ns: str) -> list[tuple[str, Pod]]:
    labels = {ARGO_WORKFLOW_LABEL: wf["metadata"].get("name") or "generated",
              **((wf["spec"].get("podMetadata") or {}).get("labels") or {})}
    out = [("step", Pod(f"step of {wf['metadata'].get('name')}", ns, labels))]
    for t in wf["spec"].get("templates") or []:
        resource = t.get("resource") or {}
        if resource.get("action") != "create":
            continue  # the delivery's patches (Argo expressions inside) make no pod
        inner = yaml.safe_load(resource["manifest"])
        if inner["kind"] == "JobSet":
            pod = inner["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
            out.append(("worker", Pod("jobset worker", ns, {JOBSET_NAME_LABEL: "run-x"},
                                      _ports(pod["spec"]["containers"]))))
        elif inner["kind"] == "Workflow":
            out.append(("step", Pod("step of a started run", ns,
                                    {ARGO_WORKFLOW_LABEL: "run-y"})))
    return out


def pods_of(objs: list[dict[str, Any]], ns: str) -> list[tuple[str, Pod]]:
    """(role, pod) for every pod the tree makes, and the foreign pods it talks to."""
    out: list[tuple[str, Pod]] = []
    for obj in objs:
        kind, spec, name = obj["kind"], obj.get("spec") or {}, obj["metadata"].get("name")
        if kind in ("Deployment", "Rollout"):
            t = spec["template"]
            component = t["metadata"]["labels"].get("app.kubernetes.io/component")
            role = "ingest" if component == "ingestion" else "server"
            out.append((role, Pod(name, ns, t["metadata"]["labels"],
                                  _ports(t["spec"]["containers"]))))
        elif kind in ("Service", "Configuration") and obj["apiVersion"].startswith("serving.kn"):
            t = spec["template"]
            out.append(("knative", Pod(name, ns, {**t["metadata"]["labels"],
                                                  "serving.knative.dev/service": name},
                                       _ports(t["spec"]["containers"]))))
        elif kind == "InferenceService":
            p = spec["predictor"]
            serverless = obj["metadata"]["annotations"].get(
                "serving.kserve.io/deploymentMode") == "Knative"
            labels = {**obj["metadata"]["labels"], **(p.get("labels") or {}),
                      "serving.kserve.io/inferenceservice": name}
            out.append(("knative" if serverless else "server",
                        # an engine's predictor is its `model` (a stock runtime's container)
                        Pod(name, ns, labels, _ports(p.get("containers") or [p["model"]]))))
        elif kind in ("WorkflowTemplate", "Workflow"):
            out += _workflow_pods(obj, ns)
        elif kind == "Sensor":
            out.append(("sensor", Pod(name, ns, {SENSOR_LABEL: name})))
            for trigger in spec["triggers"]:
                out += _workflow_pods(trigger["template"]["k8s"]["source"]["resource"], ns)
        elif kind == "EventSource":
            out.append(("eventsource", Pod(name, ns, {EVENTSOURCE_LABEL: name})))
            out.append(("eventbus", Pod("eventbus", ns, {EVENTBUS_LABEL: "default"})))
        elif kind == "ServiceMonitor" and "pushgateway" in name:
            out.append(("pushgateway", Pod(name, ns, spec["selector"]["matchLabels"],
                                           {"http": 9091})))
    return out


def _cases():
    return [pytest.param(tree, objs, ir, id=tree) for tree, objs, ir in trees()]


def _policies(objs):
    return [o for o in objs if o["kind"] == "NetworkPolicy"]


def _prometheus(ir) -> Pod:
    p = ir["platform"]
    return Pod("prometheus", p["prometheus_namespace"], p["prometheus_pod_labels"])


def test_every_policy_is_valid_kubernetes():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    count = 0
    for _, objs, _ir in trees():
        for policy in _policies(objs):
            kubernetes_validate.validate(policy, version, strict=True)
            count += 1
    assert count > 0


@pytest.mark.parametrize(("tree", "objs", "ir"), _cases())
def test_needed_flows_are_allowed_and_others_denied(tree, objs, ir):
    ns = ir["platform"]["namespace"]
    policies = _policies(objs)
    pods = pods_of(objs, ns)
    assert pods or not (ir["endpoints"] or ir["pipelines"]), tree
    network = ir["platform"]["network"]
    api_range = network["kubernetes_api"][0]
    # an address of the API server; where its range is not declared, any address might be
    api_server = Address(str(next(ipaddress.ip_network(api_range).hosts()))
                         if api_range != "0.0.0.0/0" else "10.96.0.1")
    external_https = any(u.startswith(("s3://", "gs://", "https://")) for u in (
        ir["platform"]["artifact_root"], ir["platform"]["feast_registry"]))
    dns = Pod("coredns", network["dns"]["namespace"], network["dns"]["pod_labels"])
    intruder = Pod("intruder", "someone-else", {"app": "curious"})
    neighbour = Pod("neighbour", ns, {"app": "unrelated"})
    prometheus = _prometheus(ir)
    ports = {ep["k8s_name"]: ep["port"] for ep in ir["endpoints"].values()}
    for role, pod in pods:
        where = f"{tree}: {role} {pod.name}"
        assert allowed(policies, pod, dns, 53, "UDP"), where
        assert not allowed(policies, pod, OUTSIDE, 22), where
        assert not allowed(policies, pod, neighbour, 8080), where
        for port in {*pod.ports.values(), 8012, 8080, 12000, 4222, 9091}:
            assert not allowed(policies, intruder, pod, port), f"{where} :{port}"
        if role in ("step", "sensor"):
            assert allowed(policies, pod, api_server, 443), where
        elif api_range != "0.0.0.0/0" or not (
                external_https and role in ("worker", "server", "knative", "ingest")):
            # (an HTTPS store "anywhere" includes an undeclared API server's address)
            assert not allowed(policies, pod, api_server, 443), where
        if role in ("step", "worker", "server", "knative"):
            mlflow = ir["platform"]["mlflow_tracking_uri"]
            if ".svc" in mlflow:
                host_ns = mlflow.split("//")[1].split(".")[1]
                port = int(mlflow.rsplit(":", 1)[1].split("/")[0])
                assert allowed(policies, pod, Pod("mlflow", host_ns, {"app": "mlflow"}), port)
            if ir["platform"]["artifact_root"].startswith("s3://"):
                assert allowed(policies, pod, Address("52.216.0.10"), 443), where
            for declared in network["egress"]:  # e.g. the online store's Redis
                target = (Address(str(next(ipaddress.ip_network(declared["cidr"]).hosts())))
                          if declared["cidr"] else Pod("store", declared["namespace"],
                                                       declared["pod_labels"]))
                for port in declared["ports"]:
                    assert allowed(policies, pod, target, port), where
        if role == "step":
            assert allowed(policies, pod, prometheus, 9090), where  # the gates' queries
        if role == "worker":
            peer = Pod("jobset worker 2", ns, pod.labels, pod.ports)
            assert allowed(policies, pod, peer, MASTER_PORT), where
            assert allowed(policies, pod, peer, 43211), where  # NCCL's own ports
        engine = next((e["engine_serving"] for e in ir["endpoints"].values()
                       if e["k8s_name"] == pod.labels.get("app.kubernetes.io/name")
                       and e.get("engine_serving")), None) \
            if role in ("server", "knative") else None
        if engine is not None:  # Prometheus reaches the engine's own metrics port
            assert allowed(policies, prometheus, pod, engine["scrape_port"]), where
        if role == "server":
            endpoint = pod.labels["app.kubernetes.io/name"]
            assert allowed(policies, prometheus, pod, ports[endpoint]), where
            ep = next(e for e in ir["endpoints"].values() if e["k8s_name"] == endpoint)
            for client in ep["allow_from"]:
                if pod.labels.get("mlc.dev/role") == "shadow":
                    break
                caller = Pod("client", client["namespace"] or ns, client["pod_labels"])
                assert allowed(policies, caller, pod, ports[endpoint]), where
        if role == "ingest":  # a Kafka source's consumers: brokers, the store, scraped
            source = next(i for i in ir["ingestions"].values()
                          if i["k8s_name"] == pod.labels["app.kubernetes.io/name"])
            for server in source["kafka"]["bootstrap_servers"].split(","):
                host, port = server.rsplit(":", 1)
                broker = (Pod("broker", host.split(".")[1], {"app": "kafka"})
                          if ".svc" in host else Address("203.0.113.9"))
                assert allowed(policies, pod, broker, int(port)), where
            for declared in network["egress"]:
                if declared["namespace"]:
                    store = Pod("store", declared["namespace"], declared["pod_labels"])
                    for port in declared["ports"]:
                        assert allowed(policies, pod, store, port), where
            assert allowed(policies, prometheus, pod, pod.ports["metrics"]), where
            assert not allowed(policies, pod, Pod("mlflow", "mlflow", {"app": "mlflow"}),
                               5000), where  # it reads no model
        if role == "knative":
            activator = Pod("activator", network["knative_namespace"], {"app": "activator"})
            gateway = Pod("gateway", network["gateway_namespace"], {"istio": "gateway"})
            assert allowed(policies, activator, pod, 8012), where
            assert allowed(policies, gateway, pod, 8012), where
            assert allowed(policies, prometheus, pod, 8080), where
        if role == "eventsource":
            am = network["alertmanager"]
            assert allowed(policies, Pod("alertmanager", am["namespace"], am["pod_labels"]),
                           pod, 12000), where
            assert not allowed(policies, prometheus, pod, 12000), where
        if role in ("eventsource", "sensor"):
            bus = next(p for r, p in pods if r == "eventbus")
            assert allowed(policies, pod, bus, 4222), where
        if role == "pushgateway":
            assert allowed(policies, prometheus, pod, 9091), where
            steps = [p for r, p in pods if r == "step"]
            assert steps and all(allowed(policies, s, pod, 9091) for s in steps), where


def test_the_semantics_can_say_no():
    """The evaluator is not a yes-machine: a policy isolates, a rule's port is its port."""
    ns = "a"
    web = Pod("web", ns, {"app": "web"}, {"http": 8080})
    client = Pod("client", "b", {"role": "client"})
    policy = {"metadata": {"namespace": ns}, "spec": {
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "b"}}, "podSelector": {"matchLabels": {
                "role": "client"}}}], "ports": [{"port": "http"}]}]}}
    assert allowed([policy], client, web, 8080)
    assert not allowed([policy], client, web, 8081)
    assert not allowed([policy], Pod("other", "b", {"role": "x"}), web, 8080)
    assert not allowed([policy], Pod("same-labels", "c", {"role": "client"}), web, 8080)
    assert allowed([], client, web, 9999)  # no policy: not isolated


def test_flows_are_documented():
    text = (Path(__file__).resolve().parents[1] / "docs" / "network.md").read_text("utf-8")
    for name in ("default-deny", "dns", "workflow-steps", "jobset-workers", "model-servers",
                 "pushgateway", "drift-webhook", "sensors", "eventbus"):
        assert f"`{name}`" in text, name
