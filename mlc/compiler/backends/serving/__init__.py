"""The serving backend: what a cluster needs to serve each endpoint, in one of three forms.

Per endpoint `<e>` (files only where the endpoint needs them), named like the other backends'
files, `<system>/<kind>-<e>.yaml`:

    serving/configmap-<e>.yaml                each server's runtime settings (config.py)
    serving/serviceaccount-<e>.yaml           its identity, with no API token mounted
    serving/deployment-<e>.yaml               rolling primary, shadow, A/B variants
    serving/service-<e>.yaml                  `<e>`, and one per shadow/variant/preview
    serving/horizontalpodautoscaler-<e>.yaml  cpu, rps or concurrency (autoscaling.py)
    serving/poddisruptionbudget-<e>.yaml      one pod of a server evicted at a time
    serving/networkpolicy-<e>.yaml            deny ingress but clients and Prometheus
                                              (Knative pods: Knative, gateway, Prometheus)
    gateway/httproute-<e>.yaml                `platform.gateway`: its route, A/B weights and
                                              shadow mirror (gateway.py)
    rollouts/rollout-<e>.yaml                 Argo Rollout: canary or blue-green primary
    rollouts/analysistemplate-<e>.yaml        its gates: error rate, p99 latency, PSI (and a
                                              canary's shadow phase: agreement, the
                                              shadow's errors, p99, PSI)
    knative/service-<e>.yaml                  serverless: Knative Services (primary, shadow)
    knative/configuration-<e>.yaml            serverless A/B: a Configuration per variant...
    knative/route-<e>.yaml                    ...and the Route that splits traffic by weight
    kserve/inferenceservice-<e>.yaml          `kserve: true`: InferenceServices instead;
                                              another `engine`: its stock runtime (engines.py)
    payloadlog/<kind>-<e>.yaml                an engine's prediction log: the receiver of
                                              its payload logger (payload_log.py)
    delivery/workflow-<e>.yaml                Knative/KServe canary: steps, gates (gate_driver)
    delivery/rbac-<e>.yaml                    ...and the one object its identity may patch
    delivery/cronworkflow-<e>.yaml            A/B guardrails: the guard (ab_guard.py),...
    delivery/configmap-<e>.yaml               ...the override the routers read...
    delivery/rbac-<e>.yaml                    ...and the identity that writes it

The plan (which servers an endpoint runs: workloads.py) is made first and every form renders
it; see the modules for why each object looks as it does. Batch endpoints get only their
ConfigMap (key `batch.json`): the Argo backend schedules the scoring job that reads it.
"""

from __future__ import annotations

from typing import Any

from ...ir import Endpoint, ResolvedProject
from ...output import OutputFile
from . import (
    ab_guard,
    analysis,
    autoscaling,
    config,
    deployment,
    engines,
    gate_driver,
    gateway,
    knative,
    kserve,
    network,
    payload_log,
    rollouts,
)
from . import service as services
from .workloads import Workload, form, plan, workload_name

__all__ = ["emit"]

GATED = ("canary", "blueGreen")  # strategies whose primary is an Argo Rollout


def path(system: str, kind: str, ep: Endpoint) -> str:
    return f"{system}/{kind}-{ep.k8s_name}.yaml"


def emit(project: ResolvedProject) -> list[OutputFile]:
    files: list[OutputFile] = []
    for name in sorted(project.endpoints):
        if project.endpoints[name].mode != "stream":  # the streams backend's
            files += endpoint_files(project, project.endpoints[name])
    return files


def mirror_url(project: ResolvedProject, ep: Endpoint, workloads: list[Workload]) -> str | None:
    """Where the primary sends copies of requests: the shadow's in-cluster address (none
    where the gateway mirrors)."""
    shadow = next((w for w in workloads if w.role == "shadow"), None)
    if shadow is None or ep.rollout.traffic != "server":
        return None
    shape = form(ep)
    if shape == "kserve":
        return kserve.predictor_url(project, shadow.name)
    # a Knative Service listens on port 80 of its cluster-local address
    return services.url(project, shadow.name, ep.port if shape == "kubernetes" else None)


def variant_url(project: ResolvedProject, ep: Endpoint, w: Workload) -> str:
    """Where the A/B router sends a variant's requests: its Service, or (an engine's
    InferenceService) the predictor Service KServe makes, on port 80."""
    if ep.engine != "mlc":
        return kserve.predictor_url(project, w.name)
    return services.url(project, w.name, ep.port)


def batch_settings(ep: Endpoint) -> dict[str, Any]:
    return {"endpoint": ep.name, "role": "batch", "model_uri": ep.model_uri,
            "batching": {"max_batch_size": ep.batching.max_batch_size}}


def endpoint_files(project: ResolvedProject, ep: Endpoint) -> list[OutputFile]:
    workloads = plan(ep)
    mirror = mirror_url(project, ep, workloads)
    task = project.models[ep.model].task
    variant_urls = {w.variant: variant_url(project, ep, w) for w in workloads
                    if w.role == "variant"}
    settings = {w.config_key: (config.router_settings(w, variant_urls) if w.role == "router"
                               else config.runtime_settings(w, mirror, task))
                for w in workloads}
    if ep.mode == "batch":
        settings["batch.json"] = batch_settings(ep)
    if gate_driver.driven(ep):
        settings[gate_driver.GATES_KEY] = gate_driver.gate_settings(project, ep)
        if ep.rollout.shadow_phase is not None:
            settings[gate_driver.SHADOW_GATES_KEY] = gate_driver.shadow_gate_settings(project, ep)
    if ab_guard.guard_of(ep) is not None:
        settings[ab_guard.GUARD_KEY] = ab_guard.guard_settings(project, ep)
    hashes = {w.name: config.config_hash(w, settings[w.config_key]) for w in workloads}
    out: dict[str, list[dict[str, Any]]] = {
        path("serving", "configmap", ep): [config.config_map(project, ep, settings)]}
    if workloads:
        out[path("serving", "serviceaccount", ep)] = [config.service_account(project, ep)]
        out |= {"kubernetes": _kubernetes, "knative": _knative,
                "kserve": _kserve}[form(ep)](project, ep, workloads, hashes)
        if gate_driver.driven(ep):
            out[path("delivery", "workflow", ep)] = [gate_driver.workflow(project, ep)]
            out[path("delivery", "rbac", ep)] = gate_driver.rbac(project, ep)
        if ab_guard.guard_of(ep) is not None:  # A/B: never driven, so the paths are free
            out[path("delivery", "cronworkflow", ep)] = [ab_guard.cron_workflow(project, ep)]
            out[path("delivery", "configmap", ep)] = [ab_guard.override_config_map(project, ep)]
            out[path("delivery", "rbac", ep)] = ab_guard.rbac(project, ep)
    return [OutputFile(name, docs[0] if len(docs) == 1 else docs, project.source)
            for name, docs in out.items() if docs]


def _kubernetes(project: ResolvedProject, ep: Endpoint, workloads: list[Workload],
                hashes: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    gated = ep.rollout.strategy in GATED
    files: dict[str, list[dict[str, Any]]] = {
        path("serving", "deployment", ep): [], path("serving", "horizontalpodautoscaler", ep): []}
    for w in workloads:
        if gated and w.role == "primary":
            files[path("rollouts", "rollout", ep)] = [
                rollouts.rollout(project, w, hashes[w.name])]
            files[path("rollouts", "analysistemplate", ep)] = [
                analysis.analysis_template(project, ep), *(
                    [rollouts.shadow_analysis_template(project, ep)]
                    if ep.rollout.shadow_phase is not None else [])]
            target = ("Rollout", rollouts.API_VERSION)
        else:
            files[path("serving", "deployment", ep)].append(
                deployment.deployment(project, w, hashes[w.name]))
            target = ("Deployment", "apps/v1")
        if autoscaling.autoscaled(w):
            files[path("serving", "horizontalpodautoscaler", ep)].append(
                autoscaling.hpa(project, w, *target))
    files[path("serving", "service", ep)] = services.services(project, ep, workloads)
    if project.platform.gateway is not None:
        files[path("gateway", "httproute", ep)] = [gateway.http_route(project, ep, workloads)]
    files |= _policies(project, ep, workloads)
    return files


def _policies(project: ResolvedProject, ep: Endpoint,
              workloads: list[Workload]) -> dict[str, list[dict[str, Any]]]:
    return {
        path("serving", "poddisruptionbudget", ep): [
            autoscaling.disruption_budget(project, w) for w in workloads if w.max_replicas > 0],
        path("serving", "networkpolicy", ep): network.network_policies(project, ep, workloads),
    }


def _knative(project: ResolvedProject, ep: Endpoint, workloads: list[Workload],
             hashes: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    if ep.rollout.strategy == "ab":
        return {
            path("knative", "configuration", ep): [
                knative.configuration(project, w, hashes[w.name]) for w in workloads],
            path("knative", "route", ep): [
                knative.route(project, ep, workload_name(ep), workloads)],
            **_knative_policies(project, ep, workloads),
        }
    return {path("knative", "service", ep): [knative.service(project, w, hashes[w.name])
                                             for w in workloads],
            **_knative_policies(project, ep, workloads)}


def _knative_policies(project: ResolvedProject, ep: Endpoint,
                      workloads: list[Workload]) -> dict[str, list[dict[str, Any]]]:
    return {path("serving", "networkpolicy", ep): network.knative_policies(project, ep,
                                                                           workloads)}


def _kserve(project: ResolvedProject, ep: Endpoint, workloads: list[Workload],
            hashes: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    render = engines.inference_service if ep.engine != "mlc" else kserve.inference_service
    files = {path("kserve", "inferenceservice", ep): [
        render(project, w, hashes[w.name]) for w in workloads if w.role != "router"]}
    # an engine's prediction log: the receiver behind the predictors (not the router)
    files |= payload_log.files(project, ep, [w for w in workloads if w.role != "router"])
    if ep.rollout.traffic == "router":  # an engine's A/B: mlc's router before the predictors
        return files | _engine_router(project, ep, workloads, hashes)
    if ep.mode == "serverless":
        if ep.rollout.strategy == "ab":
            files[path("knative", "route", ep)] = [knative.route(
                project, ep, workload_name(ep), workloads, kserve.PREDICTOR_SUFFIX)]
        return files | _knative_policies(project, ep, workloads)
    if ep.rollout.strategy == "ab":
        # the variants' pods behind one address, weighted by replica count
        files[path("serving", "service", ep)] = services.services(project, ep, [])
    return files | _policies(project, ep, workloads)


def _engine_router(project: ResolvedProject, ep: Endpoint, workloads: list[Workload],
                   hashes: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """An engine endpoint's A/B router: a Deployment of mlc's serve image, the endpoint's
    Service `<e>` over its pods, and the policies (the variants' pods take the router's
    requests on the engine's port)."""
    router = [w for w in workloads if w.role == "router"]
    return {
        path("serving", "deployment", ep): [
            deployment.deployment(project, w, hashes[w.name]) for w in router],
        path("serving", "service", ep): services.services(project, ep, []),
        **_policies(project, ep, workloads),
    }
