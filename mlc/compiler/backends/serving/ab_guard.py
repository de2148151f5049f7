"""The A/B guard: per-variant guardrails, measured on a schedule, enforced by the router.

For an A/B endpoint with `rollout.gates` (resolve/ab_guard.py: only where the mlc router
splits the traffic), the serving backend writes

    delivery/cronworkflow-<e>.yaml  the CronWorkflow `ab-guard-<e>`, every gate interval:
                                    1. `measure`: `python -m mlc.runtime ab-guard` in the
                                       serve image reads the last override (an input from
                                       the override ConfigMap), measures each guarded
                                       variant's error ratio and p99 as the router counted
                                       them, pushes mlc_ab_guard_* to the Pushgateway and
                                       prints the new override;
                                    2. `write`: a merge patch of that override into the
                                       ConfigMap;
    delivery/configmap-<e>.yaml     the override ConfigMap `<e>-ab-guard`, without `data`
    delivery/rbac-<e>.yaml          the guard's identity: get and patch that one ConfigMap

and the router pods mount the override ConfigMap (optional), re-reading it as the kubelet
refreshes it (mlc/runtime/serve/weights_override.py). Git stays the source of the weights:
the ConfigMap in the tree declares no `data`, so Argo CD's sync leaves the guard's alone
(and the Application ignores `/data` of that one object besides, `ignored_fields`), and a
stop names the model the variant served, so a new version in ml.yaml ends it.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import Container, CronWorkflow, Parameter, Resource, Step, Steps
from hera.workflows import models as m

from mlc import metrics

from ...ir import AbGuard, Endpoint, ResolvedProject
from .. import pods
from ..argo.model_dict import to_dict
from ..argo.schedules import (
    CONCURRENCY_POLICY,
    FAILED_HISTORY,
    STARTING_DEADLINE_SECONDS,
    SUCCESSFUL_HISTORY,
)
from ..argo.steps import executor_patch
from ..monitoring import promql
from ..objects import account_with_role, metadata
from . import analysis
from .workloads import COMPONENT, config_map_name

GUARD_KEY = "ab-guard.json"  # the guard file's key in the endpoint's ConfigMap
GUARD_DIR = "/etc/mlc"  # where the measure step mounts it
OVERRIDE_KEY = "override.json"
# beside /etc/mlc, not in it: a mount point inside a read-only volume cannot be created
OVERRIDE_DIR = "/etc/mlc-ab-guard"
VARIANT = "{{variant}}"  # the guard file's placeholder, replaced by each variant's name
POLL_SECONDS = 5  # how often the router looks at the mounted file
PARAMETER_CONFIGMAP_LABEL = {"workflows.argoproj.io/configmap-type": "Parameter"}
# A run measures a handful of queries: if it takes longer, something hangs.
RUN_DEADLINE_SECONDS = 300
KEEP_RUN_SECONDS = 86400
GATE_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"},
                  "limits": {"cpu": "500m", "memory": "256Mi"}}


def guard_of(ep: Endpoint) -> AbGuard | None:
    return ep.rollout.ab_guard


def _selector(project: ResolvedProject, ep: Endpoint, name: str,
              regex: dict[str, str] | None = None) -> str:
    labels = {promql.SCOPE_LABEL: project.platform.namespace, "endpoint": ep.name}
    parts = [f"{k}={analysis.literal(v)}" for k, v in sorted(labels.items())]
    parts += [f"{k}=~{analysis.literal(v)}" for k, v in sorted((regex or {}).items())]
    parts.append(f'variant="{VARIANT}"')  # our placeholder, replaced by an escaped name
    return name + "{" + ", ".join(parts) + "}"


def error_rate_query(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    requests = promql.series(metrics.ROUTER_REQUESTS)
    errors = _selector(project, ep, requests, {"code": metrics.SERVER_ERROR_CODES})
    total = _selector(project, ep, requests)
    # the router counts a code from its first request with it: no 5xx series is no 5xx;
    # no series at all is 0/0, NaN (inconclusive)
    return ("# Share of the variant's requests the router answered 5xx (its own 502 when the "
            "variant did not answer); NaN without traffic.\n"
            f"(sum(rate({errors}[{window}])) or vector(0))\n"
            f"/\n"
            f"(sum(rate({total}[{window}])) or vector(0))\n")


def latency_query(project: ResolvedProject, ep: Endpoint, window: str) -> str:
    buckets = _selector(project, ep, promql.series(metrics.ROUTER_DURATION, "_bucket"))
    return ("# p99 of the variant's requests through the router; NaN without traffic.\n"
            f"histogram_quantile({promql.number(analysis.LATENCY_QUANTILE)},\n"
            f"  sum by (le) (rate({buckets}[{window}])))\n"
            f"or {analysis.NO_DATA}\n")


def gate_checks(project: ResolvedProject, ep: Endpoint) -> list[tuple[str, str, float]]:
    guard = guard_of(ep)
    assert guard is not None
    window = promql.duration(max(analysis.MIN_WINDOW_SECONDS, guard.interval_seconds))
    return [("error-rate", error_rate_query(project, ep, window), guard.max_error_rate),
            ("latency-p99", latency_query(project, ep, window), guard.max_latency_p99_seconds)]


def guard_settings(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    """The guard file: what to measure, for which variants, and the model each serves."""
    guard = guard_of(ep)
    assert guard is not None
    models = {v.name: v.model_uri for v in ep.rollout.variants}
    return {
        "endpoint": ep.name,
        "prometheus": project.platform.prometheus_url,
        "baseline": guard.baseline,
        "variants": {v: models[v] for v in guard.guarded},
        "failureLimit": guard.failure_limit,
        "placeholders": {"variant": VARIANT},
        "gates": [{"name": name, "query": query, "max": limit}
                  for name, query, limit in gate_checks(project, ep)],
    }


def router_guard(ep: Endpoint) -> dict[str, Any] | None:
    """The router's `guard` settings: where the override is mounted, and what it may stop."""
    guard = guard_of(ep)
    if guard is None:
        return None
    return {"override": f"{OVERRIDE_DIR}/{OVERRIDE_KEY}", "baseline": guard.baseline,
            "models": {v.name: v.model_uri for v in ep.rollout.variants if v.weight > 0},
            "poll_seconds": POLL_SECONDS}


def router_volume(ep: Endpoint) -> dict[str, Any]:
    guard = guard_of(ep)
    assert guard is not None
    # optional: the ConfigMap has no key until the guard's first run writes one
    return {"name": "ab-guard", "configMap": {"name": guard.config_map, "optional": True}}


def router_mount() -> dict[str, Any]:
    return {"name": "ab-guard", "mountPath": OVERRIDE_DIR, "readOnly": True}


def override_config_map(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    """No `data`: Argo CD leaves what the tree does not declare alone, so the guard's
    override survives every sync; the label lets a workflow read it as a parameter."""
    guard = guard_of(ep)
    assert guard is not None
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(project, guard.config_map, origin=ep.origin,
                                 component=COMPONENT,
                                 extra_labels=dict(PARAMETER_CONFIGMAP_LABEL))}


def ignored_fields(project: ResolvedProject) -> list[dict[str, Any]]:
    """The override's data, for Argo CD's diff: the guard's, never git's."""
    return [{"group": "", "kind": "ConfigMap", "name": g.config_map,
             "namespace": project.platform.namespace, "jsonPointers": ["/data"]}
            for g in (guard_of(project.endpoints[n]) for n in sorted(project.endpoints))
            if g is not None]


def _write_manifest(guard: AbGuard) -> str:
    # the override is one line of JSON without a single quote (mlc/runtime/ab_guard.py),
    # which Argo puts in place of the tag before it parses the manifest
    return ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
            f"  name: {guard.config_map}\n"
            f"data:\n  {OVERRIDE_KEY}: '{{{{inputs.parameters.override}}}}'\n")


def cron_workflow(project: ResolvedProject, ep: Endpoint) -> dict[str, Any]:
    guard = guard_of(ep)
    assert guard is not None
    meta = metadata(project, guard.workflow, origin=ep.origin, component=COMPONENT)
    measure = Container(
        name="measure", image=ep.image.ref,
        image_pull_policy=pods.pull_policy(ep.image),
        command=["python", "-m", "mlc.runtime"],
        args=["ab-guard", "--gates", f"{GUARD_DIR}/{GUARD_KEY}",
              "--state", "{{inputs.parameters.state}}"],
        inputs=[Parameter(name="state", value_from=m.ValueFrom(
            config_map_key_ref=m.ConfigMapKeySelector(name=guard.config_map, key=OVERRIDE_KEY),
            default=""))],  # no run yet: no override
        env=[m.EnvVar(name="HOME", value="/tmp"),
             m.EnvVar(name="MLC_PUSHGATEWAY_URL", value=project.platform.pushgateway_url)],
        resources=m.ResourceRequirements.parse_obj(GATE_RESOURCES),
        security_context=m.SecurityContext.parse_obj(pods.container_security_context()),
        volume_mounts=[m.VolumeMount(name="guard", mount_path=GUARD_DIR, read_only=True),
                       m.VolumeMount(name="tmp", mount_path="/tmp")],
        # the measurement reads Prometheus only: no API token in its container; Argo's
        # `wait` container reports the result with the executor's
        automount_service_account_token=False,
        executor=m.ExecutorConfig(service_account_name=guard.account),
        pod_spec_patch=executor_patch("wait"))
    write = Resource(
        name="write", action="patch", merge_strategy="merge", manifest=_write_manifest(guard),
        inputs=[Parameter(name="override")],
        # a resource step's pod is argoexec alone: its `main` gets the same rules
        pod_spec_patch=executor_patch("main"))
    run = Steps(name="guard", sub_steps=[
        Step(name="measure", template="measure"),
        Step(name="write", template="write",
             arguments={"override": "{{steps.measure.outputs.result}}"}),
    ])
    volumes = [m.Volume(name="guard", config_map=m.ConfigMapVolumeSource(
                   name=config_map_name(ep), items=[m.KeyToPath(key=GUARD_KEY,
                                                                 path=GUARD_KEY)])),
               m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource())]
    cron = CronWorkflow(
        name=meta["name"], namespace=meta["namespace"], labels=meta["labels"],
        annotations=meta["annotations"],
        schedules=[guard.schedule], timezone="UTC",
        concurrency_policy=CONCURRENCY_POLICY,  # one run at a time reads and writes the state
        starting_deadline_seconds=STARTING_DEADLINE_SECONDS,
        successful_jobs_history_limit=SUCCESSFUL_HISTORY,
        failed_jobs_history_limit=FAILED_HISTORY,
        entrypoint="guard", templates=[run, measure, write],
        service_account_name=guard.account,
        active_deadline_seconds=RUN_DEADLINE_SECONDS,
        security_context=m.PodSecurityContext.parse_obj(pods.pod_security_context()),
        volumes=volumes,
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
        ttl_strategy=m.TTLStrategy(seconds_after_completion=KEEP_RUN_SECONDS))
    return to_dict(cron)


def rbac(project: ResolvedProject, ep: Endpoint) -> list[dict[str, Any]]:
    """The guard's identity: read and patch the one override ConfigMap, report step results."""
    guard = guard_of(ep)
    assert guard is not None
    name = guard.account
    meta = metadata(project, name, origin=ep.origin, component=COMPONENT)
    rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [guard.config_map],
         "verbs": ["get", "patch"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
         "verbs": ["create", "patch"]},
    ]
    # a token: the write step patches the ConfigMap with it
    return account_with_role(project, meta, rules)
