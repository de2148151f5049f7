"""NetworkPolicies of the environment's namespace: everything denied, then each flow allowed.

    network/networkpolicy-default-deny.yaml    no pod sends or receives anything...
    network/networkpolicy-dns.yaml             ...but DNS lookups
    network/networkpolicy-workflow-steps.yaml  Argo step pods: the Kubernetes API (Argo's
                                               executor, JobSets, delivery patches), MLflow,
                                               Prometheus, the Pushgateway, stores
    network/networkpolicy-katib-trials.yaml    Katib's trial pods: stores, Katib's DB manager
    network/networkpolicy-jobset-workers.yaml  distributed training: stores, and each other
    network/networkpolicy-model-servers.yaml   endpoint pods (every form): MLflow, stores,
                                               shadows (directly or through the gateway)
    network/networkpolicy-pushgateway.yaml     the namespace's Pushgateway: pushes, scrapes
    network/networkpolicy-drift-webhook.yaml   Alertmanager -> EventSource -> EventBus
    network/networkpolicy-<project>-trigger-*  an event trigger's EventSource: its bucket (or
                                               an S3 bucket's queue, a GCS one's Pub/Sub),
                                               brokers or the Kubernetes API -> EventBus
    network/networkpolicy-sensors.yaml         EventBus -> Sensor -> Kubernetes API
    network/networkpolicy-eventbus.yaml        the EventBus pods among themselves

Who may call an endpoint is the serving backend's (serving/network.py): its clients
(`allowFrom`), Prometheus, and for Knative and KServe serverless pods Knative's activator,
autoscaler and the ingress gateway. The pods are selected by the labels that their
controllers set (Argo, JobSet, Argo Events) or that mlc sets (endpoints); the namespace is the
environment's own, so "every Argo step pod of the namespace" is every step of this project.
docs/network.md lists the flows.
"""

from __future__ import annotations

from typing import Any

from ...ir import ResolvedProject
from ...output import OutputFile
from ..argo import events, katib, retrain_triggers
from ..argo.distributed import JOBSET_NAME_LABEL
from ..monitoring.servicemonitors import uses_pushgateway
from ..objects import metadata
from ..serving import gate_driver
from ..serving.workloads import COMPONENT as SERVING_COMPONENT
from . import destinations as d

API_VERSION = "networking.k8s.io/v1"
COMPONENT = "network"
ARGO_WORKFLOW_LABEL = "workflows.argoproj.io/workflow"  # on every pod of a Workflow
EVENTSOURCE_LABEL = "eventsource-name"  # Argo Events' labels on its pods
SENSOR_LABEL = "sensor-name"
EVENTBUS_LABEL = "eventbus-name"
EVENTBUS_CLIENT_PORT = 4222  # NATS and JetStream
GATEWAY_PORTS = (80, 8080, 8081)  # Knative/KServe cluster-local gateways


def exists(key: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": "Exists"}]}


def policy(project: ResolvedProject, name: str, pods: dict[str, Any], *,
           ingress: list[dict[str, Any]] | None = None,
           egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A policy of the given types: a type with an empty list allows nothing more."""
    spec: dict[str, Any] = {"podSelector": pods, "policyTypes": []}
    if ingress is not None:
        spec["policyTypes"].append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = egress
    return {"apiVersion": API_VERSION, "kind": "NetworkPolicy",
            "metadata": metadata(project, name, component=COMPONENT), "spec": spec}


def _own(project: ResolvedProject, pods: dict[str, Any]) -> dict[str, Any]:
    return {"podSelector": pods}


def _work_egress(project: ResolvedProject) -> list[dict[str, Any]]:
    """What a step or a model server reads and writes: MLflow, object store, Feast stores."""
    network = project.platform.network
    assert network is not None
    return [*(d.url_rule(project, u) for u in d.store_urls(project)),
            *d.store_rules(project),
            *(d.declared_rule(peer) for peer in network.egress)]


def _pushgateway_in_namespace(project: ResolvedProject) -> bool:
    rule = d.url_rule(project, project.platform.pushgateway_url)
    return uses_pushgateway(project) and rule is not None and rule["to"][0].get(
        "namespaceSelector", {}).get("matchLabels", {}).get(
            d.NAMESPACE_NAME_LABEL) == project.platform.namespace


def _prometheus(project: ResolvedProject) -> dict[str, Any]:
    p = project.platform
    return d.namespace_peer(p.prometheus_namespace, p.prometheus_pod_labels)


def policies(project: ResolvedProject) -> list[dict[str, Any]]:
    p = project.platform
    network = p.network
    assert network is not None
    steps = exists(ARGO_WORKFLOW_LABEL)
    workers = exists(JOBSET_NAME_LABEL)
    servers = {"matchLabels": {"app.kubernetes.io/component": SERVING_COMPONENT}}
    pushgateway = {"matchLabels": dict(d.PUSHGATEWAY_LABELS)}
    out = [
        policy(project, "default-deny", {}, ingress=[], egress=[]),
        policy(project, "dns", {}, egress=[d.dns_rule(project)]),
    ]
    # Argo step pods: pipelines, delivery workflows and A/B guards
    if project.pipelines or any(gate_driver.driven(e) or e.rollout.ab_guard is not None
                                for e in project.endpoints.values()):
        step_egress = [d.kubernetes_api_rule(project), *_work_egress(project),
                       d.url_rule(project, p.prometheus_url),
                       *(d.url_rule(project, u) for u in d.vector_store_urls(project))]
        if uses_pushgateway(project):
            step_egress.append(d.url_rule(project, p.pushgateway_url))
        out.append(policy(project, "workflow-steps", steps, ingress=[],
                          egress=d.unique(step_egress)))
    if katib.katib_namespaces(project):
        # Katib's trial pods: what a step reads and writes, and Katib's DB manager, to which
        # their metrics collector sends what it read (no ingress)
        trials = exists(katib.TRIAL_LABEL)
        out.append(policy(project, "katib-trials", trials, ingress=[], egress=d.unique([
            *_work_egress(project),
            *(d.rule([d.namespace_peer(ns)], d.tcp(katib.DB_MANAGER_PORT))
              for ns in katib.katib_namespaces(project)),
        ])))
    if any(s.nodes > 1 for pl in project.pipelines.values() for s in pl.steps):
        # rendezvous and collectives (NCCL, Gloo) use ports of their own choosing
        peers = [_own(project, workers)]
        out.append(policy(project, "jobset-workers", workers, ingress=[{"from": peers}],
                          egress=d.unique([{"to": peers}, *_work_egress(project)])))
    if project.endpoints:
        ports = sorted({e.port for e in project.endpoints.values()})
        out.append(policy(project, "model-servers", servers, egress=d.unique([
            *_work_egress(project),
            # a primary mirrors requests to its shadow: directly, or through the gateway
            d.rule([_own(project, servers)], d.tcp(*ports)),
            d.rule([d.namespace_peer(network.gateway_namespace)], d.tcp(*GATEWAY_PORTS)),
        ])))
    if _pushgateway_in_namespace(project):
        port = d.url_rule(project, p.pushgateway_url)["ports"]  # type: ignore[index]
        out.append(policy(project, "pushgateway", pushgateway, ingress=[
            {"from": [_own(project, steps), _prometheus(project)], "ports": port}]))
    if retrain_triggers.all_triggers(project):
        bus = exists(EVENTBUS_LABEL)
        to_bus = d.rule([_own(project, bus)], d.tcp(EVENTBUS_CLIENT_PORT))
        am = network.alertmanager
        if retrain_triggers.retrain_checks(project):
            # the alerts EventSource alone: the other EventSources take no connections
            alerts = {"matchLabels": {EVENTSOURCE_LABEL: events.event_source_name(project)}}
            out.append(policy(project, "drift-webhook", alerts, ingress=[
                {"from": [d.namespace_peer(am.namespace or "", am.pod_labels)],
                 "ports": d.tcp(events.PORT)}], egress=[to_bus]))
        out += _trigger_source_policies(project, to_bus)
        out += [
            policy(project, "sensors", exists(SENSOR_LABEL), ingress=[],
                   egress=[to_bus, d.kubernetes_api_rule(project)]),
            policy(project, "eventbus", bus, ingress=[
                {"from": [_own(project, exists(EVENTSOURCE_LABEL)),
                          _own(project, exists(SENSOR_LABEL))],
                 "ports": d.tcp(EVENTBUS_CLIENT_PORT)},
                {"from": [_own(project, bus)]}],  # the bus's replicas: cluster ports
                egress=[{"to": [_own(project, bus)]}]),
        ]
    return out


def _trigger_source_policies(project: ResolvedProject,
                             to_bus: dict[str, Any]) -> list[dict[str, Any]]:
    """Each event trigger's EventSource: no ingress; its bucket, brokers or the API server."""
    out = []
    for t in sorted(project.event_triggers.values(), key=lambda t: t.k8s_name):
        if t.object is not None and t.object.store != "minio":
            targets = _cloud_bucket_rules(project, t.object)
        elif t.object is not None:
            scheme = "http" if t.object.insecure else "https"
            targets = [d.url_rule(project, f"{scheme}://{t.object.endpoint}")]
        elif t.topic is not None:
            targets = [d.url_rule(project, f"kafka://{server.strip()}")
                       for server in t.topic.kafka.bootstrap_servers.split(",")]
        else:
            targets = [d.kubernetes_api_rule(project)]
        name = retrain_triggers.trigger_event_source_name(project, t.k8s_name)
        out.append(policy(project, name, {"matchLabels": {EVENTSOURCE_LABEL: name}},
                          ingress=[], egress=d.unique([to_bus, *targets])))
    return out


# Where a pod's cloud identity comes from: EKS Pod Identity's agent, GKE's metadata server
# (and Dataplane V2's port for it); IRSA's web identity goes to STS over HTTPS, outside.
EKS_POD_IDENTITY_AGENT = ("169.254.170.23/32", 80)
GKE_METADATA = (("169.254.169.254/32", 80), ("169.254.169.252/32", 988))


def _cloud_bucket_rules(project: ResolvedProject, o) -> list[dict[str, Any] | None]:
    """An S3 trigger's SQS API (and STS), a GCS trigger's Pub/Sub API, both HTTPS outside the
    cluster; with no key in a Secret, the address its cloud identity comes from."""
    rules: list[dict[str, Any] | None] = [d.rule([d.outside(project)], d.tcp(443))]
    if o.sqs is not None and o.access_key is None and o.sqs.role_arn is None:
        cidr, port = EKS_POD_IDENTITY_AGENT
        rules.append(d.rule([{"ipBlock": {"cidr": cidr}}], d.tcp(port)))
    if o.pubsub is not None and o.pubsub.credentials is None:
        rules += [d.rule([{"ipBlock": {"cidr": cidr}}], d.tcp(port))
                  for cidr, port in GKE_METADATA]
    return rules


def emit(project: ResolvedProject) -> list[OutputFile]:
    return [OutputFile(f"network/networkpolicy-{obj['metadata']['name']}.yaml", obj,
                       project.source) for obj in policies(project)]
