"""The serving pod: one container running `python -m mlc.runtime serve`, in every form
(the A/B router's runs `python -m mlc.runtime route`, on its own hardware profile).

Deployments, Argo Rollouts, Knative and KServe all take a pod spec; they differ in the
fields their admission webhooks accept (Knative refuses lifecycle hooks and, unless a
feature flag is set, topology spread and node selectors), which `form` decides here.

Knative also refuses a pod-level `securityContext` unless its
`kubernetes.podspec-securitycontext` flag is on (it is off in a default install), and the
container-level `privileged` field always. Under Knative the same lock-down is therefore
written on the container alone: non-root user and group, no escalation, no capabilities,
read-only root, RuntimeDefault seccomp, all fields a default install accepts.
"""

from __future__ import annotations

from typing import Any

from ...ir import Hardware, ResolvedProject
from ...resolve import PROJECT_JSON
from ..core import config_map_name as project_config_map_name
from ..escape import container_text
from ..feast import DATA_ROOT_ENV, ONLINE_SECRET_ENV, REPO_MOUNT_PATH, repo_config_map_name
from ..pods import (
    RUNTIME_UID,
    container_security_context,
    pod_security_context,
    pull_policy,
    resources,
    scheduling,
    secret_env,
    shared_memory_mount,
    shared_memory_volume,
)
from . import ab_guard
from .workloads import Form, Workload, config_map_name, pod_labels, selector, service_account_name

CONTAINER = "serve"
KSERVE_CONTAINER = "kserve-container"  # the name KServe requires of a custom predictor
PORT_NAME = "http"
CONFIG_DIR = "/etc/mlc"
ENDPOINT_CONFIG = f"{CONFIG_DIR}/endpoint.json"
ENDPOINT_CONFIG_ENV = "MLC_ENDPOINT_CONFIG"
SCRATCH_DIR = "/tmp"  # the only writable path: model downloads and library caches

LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"  # 200 only once the model is loaded and warm
METRICS_PATH = "/metrics"

# Loading a model (downloading it, moving it to a GPU) can take minutes; the startup probe
# gives it that long before liveness may restart the pod: 60 x 5 s = 5 minutes.
STARTUP_PERIOD_SECONDS = 5
STARTUP_FAILURES = 60
# Draining: the endpoint controller and kube-proxy learn of a terminating pod a few seconds
# late; sleeping first lets in-flight and late-routed requests finish.
PRE_STOP_SLEEP_SECONDS = 5
# After SIGTERM the server keeps answering (readiness false) for DRAIN_SECONDS, where no
# preStop hook delays the signal (Knative, KServe serverless) or the hook is not supported;
# then the requests in flight get IN_FLIGHT_SECONDS; then the batch queue empties and the
# prediction log is flushed to its store, given FLUSH_SECONDS. The pod is killed only after
# all of that, plus a margin for the process to exit.
DRAIN_SECONDS = 5
IN_FLIGHT_SECONDS = 10
FLUSH_SECONDS = 10
EXIT_MARGIN_SECONDS = 5
TERMINATION_GRACE_SECONDS = (PRE_STOP_SLEEP_SECONDS + DRAIN_SECONDS + IN_FLIGHT_SECONDS
                             + FLUSH_SECONDS + EXIT_MARGIN_SECONDS)
DRAIN_ENV = "MLC_DRAIN_SECONDS"
IN_FLIGHT_ENV = "MLC_SHUTDOWN_TIMEOUT_SECONDS"
# The model a server loads, in its pod template (the runtime prefers it to the ConfigMap's):
# a stable pod that restarts during a rollout keeps its own ReplicaSet's (or Knative
# revision's) model, where the endpoint's one ConfigMap already names the new version.
MODEL_URI_ENV = "MLC_MODEL_URI"


def command(w: Workload) -> tuple[list[str], list[str]]:
    if w.role == "router":
        return (["python", "-m", "mlc.runtime"], ["route", "--endpoint", w.endpoint.name])
    return (["python", "-m", "mlc.runtime"],
            ["serve", "--project", PROJECT_JSON, "--endpoint", w.endpoint.name])


def hardware(project: ResolvedProject, w: Workload) -> Hardware:
    if w.role == "router":
        return project.hardware[w.endpoint.rollout.router_hardware]
    return project.hardware[w.endpoint.hardware]


def env(project: ResolvedProject, w: Workload) -> list[dict[str, Any]]:
    """The endpoint's own variables (resolve refused names of mlc's), then the contract's;
    secrets by reference only."""
    platform = project.platform
    out: list[dict[str, Any]] = [
        {"name": ENDPOINT_CONFIG_ENV, "value": ENDPOINT_CONFIG},
        # Python libraries cache under $HOME; the root filesystem is read-only
        {"name": "HOME", "value": SCRATCH_DIR},
        # the server's shutdown, in the steps terminationGracePeriodSeconds is the sum of
        {"name": DRAIN_ENV, "value": str(DRAIN_SECONDS)},
        {"name": IN_FLIGHT_ENV, "value": str(IN_FLIGHT_SECONDS)},
    ]
    if w.role == "router":  # it reads its settings only: no registry, no feature store
        return sorted(out, key=lambda e: e["name"])
    out += [{"name": k, "value": v} for k, v in w.endpoint.env.items()]
    if w.model_uri is not None:
        out.append({"name": MODEL_URI_ENV, "value": container_text(w.model_uri)})
    out.append({"name": "MLFLOW_TRACKING_URI",
                "value": container_text(platform.mlflow_tracking_uri)})
    secrets = dict(w.endpoint.secrets)
    if platform.mlflow_credentials:
        secrets["MLFLOW_TRACKING_TOKEN"] = platform.mlflow_credentials
    if w.endpoint.online_features:
        # Feast reads relative paths of ml.yaml under this folder (none exist in a cluster
        # store, but the generated repository insists on the variable being set)
        out.append({"name": DATA_ROOT_ENV, "value": SCRATCH_DIR})
        if platform.online_store_secret:
            secrets[ONLINE_SECRET_ENV] = platform.online_store_secret
    return sorted(out + secret_env(secrets), key=lambda e: e["name"])


def probe(path: str, *, period: int, failures: int, form: Form) -> dict[str, Any]:
    get: dict[str, Any] = {"path": path}
    if form != "knative":
        get["port"] = PORT_NAME  # Knative probes the one container port by itself
    return {"httpGet": get, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": 2}


def container(project: ResolvedProject, w: Workload, form: Form) -> dict[str, Any]:
    ep = w.endpoint
    cmd, args = command(w)
    out: dict[str, Any] = {
        "name": CONTAINER,
        "image": ep.image.ref,
        "imagePullPolicy": pull_policy(ep.image),
        "command": cmd,
        "args": args,
        "env": env(project, w),
        "ports": [{"name": "http1" if form == "knative" else PORT_NAME,
                   "containerPort": ep.port, "protocol": "TCP"}],
        "resources": resources(hardware(project, w)),
        "startupProbe": probe(LIVE_PATH, period=STARTUP_PERIOD_SECONDS,
                              failures=STARTUP_FAILURES, form=form),
        "livenessProbe": probe(LIVE_PATH, period=10, failures=3, form=form),
        "readinessProbe": probe(READY_PATH, period=5, failures=2, form=form),
        "securityContext": security_context(form),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "scratch", "mountPath": SCRATCH_DIR},
        ],
    }
    if ep.online_features and w.role != "router":
        out["volumeMounts"].append({"name": "feast", "mountPath": REPO_MOUNT_PATH,
                                    "readOnly": True})
    if w.role == "router" and ab_guard.guard_of(ep) is not None:
        out["volumeMounts"].append(ab_guard.router_mount())
    if hardware(project, w).shared_memory:
        out["volumeMounts"].append(shared_memory_mount(SHM_VOLUME))
    if form == "kubernetes":
        out["lifecycle"] = {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}}
    return out


def security_context(form: Form) -> dict[str, Any]:
    out = container_security_context()
    if form == "knative":
        del out["privileged"]  # false is the default; Knative refuses the field itself
        out["runAsGroup"] = RUNTIME_UID  # on the pod elsewhere, which Knative refuses
    return dict(sorted(out.items()))


def volumes(project: ResolvedProject, w: Workload) -> list[dict[str, Any]]:
    """project.json and this server's settings side by side in one read-only folder."""
    config = {"name": "config", "projected": {"sources": [
        {"configMap": {"name": project_config_map_name(project),
                       "items": [{"key": "project.json", "path": "project.json"}]}},
        {"configMap": {"name": config_map_name(w.endpoint),
                       "items": [{"key": w.config_key, "path": "endpoint.json"}]}},
    ]}}
    out = [config, {"name": "scratch", "emptyDir": {}}]
    if w.endpoint.online_features and w.role != "router":
        out.append({"name": "feast", "configMap": {"name": repo_config_map_name(project)}})
    if w.role == "router" and ab_guard.guard_of(w.endpoint) is not None:
        out.append(ab_guard.router_volume(w.endpoint))  # re-read as the kubelet refreshes it
    out += shm_volumes(project, w)
    return out


SHM_VOLUME = "dshm"


def shm_volumes(project: ResolvedProject, w: Workload) -> list[dict[str, Any]]:
    """/dev/shm at the hardware profile's `sharedMemory`, where it sets one (a model server
    whose workers or GPUs exchange tensors through it: a container's own is 64Mi)."""
    profile = hardware(project, w)
    return [shared_memory_volume(SHM_VOLUME, profile)] if profile.shared_memory else []


def topology_spread(project: ResolvedProject, w: Workload,
                    hash_label: str) -> list[dict[str, Any]]:
    """Spread replicas over zones, then nodes, so that one failure takes few of them.

    ScheduleAnyway: a preference, never a reason to leave a pod pending. `hash_label` limits
    the count to the pods of one revision, so that a rollout does not skew it.
    """
    return [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": selector(project, w)},
             "matchLabelKeys": [hash_label]}
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]


def pod_spec(project: ResolvedProject, w: Workload, form: Form, *,
             hash_label: str = "pod-template-hash") -> dict[str, Any]:
    profile = hardware(project, w)
    spec: dict[str, Any] = {
        "serviceAccountName": service_account_name(w.endpoint),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no Service addresses as env vars: they leak and bloat
        "containers": [container(project, w, form)],
        "volumes": volumes(project, w),
        # GPU node selector and taints, spot placement, priority: from the hardware profile
        **scheduling(profile),
    }
    if form != "knative":
        spec["securityContext"] = pod_security_context()
        spec["terminationGracePeriodSeconds"] = TERMINATION_GRACE_SECONDS
        spec["topologySpreadConstraints"] = topology_spread(project, w, hash_label)
    return spec


def template_metadata(project: ResolvedProject, w: Workload, config_hash: str,
                      annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "labels": pod_labels(project, w),
        "annotations": {
            "mlc.dev/config-hash": config_hash,
            # for Prometheus setups that discover targets by annotation; the monitoring
            # backend's PodMonitor selects the same pods by label
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(w.endpoint.port),
            "prometheus.io/path": METRICS_PATH,
            **(annotations or {}),
        },
    }

def registry_env(project: ResolvedProject) -> list[dict[str, Any]]:
    """What a container that reads the MLflow registry needs (the model fetch of an engine
    endpoint, a custom server, the payload log receiver): its home, the tracking URI, the
    token by reference."""
    p = project.platform
    out: list[dict[str, Any]] = [
        {"name": "HOME", "value": SCRATCH_DIR},
        {"name": "MLFLOW_TRACKING_URI", "value": container_text(p.mlflow_tracking_uri)}]
    secrets = {"MLFLOW_TRACKING_TOKEN": p.mlflow_credentials} if p.mlflow_credentials else {}
    return out + secret_env(secrets)


def fetch_resources(project: ResolvedProject, w: Workload) -> dict[str, dict[str, str]]:
    """The profile's CPU and memory: a download needs no accelerator."""
    out = resources(hardware(project, w))
    return {k: {r: q for r, q in v.items() if not r.endswith("/gpu")} for k, v in out.items()}

