"""An endpoint of another engine (`serving.<e>.engine`): a KServe InferenceService whose
predictor is the engine's stock ClusterServingRuntime, or the user's container.

What resolve chose (ir.EngineServing, mlc/compiler/resolve/engines.py) is written as a
user of KServe would write it by hand: `predictor.model` with `modelFormat`, `runtime` and
`protocolVersion`, the hardware profile's resources and placement, the security context
of every mlc pod. The model comes from the MLflow registry through an init container of
mlc's serve image (`python -m mlc.runtime fetch-model`, mlc/runtime/serve/fetch.py), which
resolves the alias and writes the engine's layout into an emptyDir mounted at
`/mnt/models`, where each stock runtime reads its model. No `storageUri` is set: KServe's
storage initializer does not read `models:/` URIs, and without one it adds nothing.

Replicas, autoscaling and the canary's `canaryTrafficPercent` are the same as for mlc's
own runtime on KServe (kserve.py), so the delivery workflow (gate_driver.py) steps an
engine's canary in Knative mode exactly as it steps mlc's, over the engine's series.
"""

from __future__ import annotations

from typing import Any

from ...ir import Endpoint, EngineServing, ResolvedProject
from ...resolve.engines import MODEL_DIR
from ..escape import container_text
from ..objects import metadata
from ..pods import (
    pod_security_context,
    pull_policy,
    resources,
    scheduling,
    secret_env,
    shared_memory_mount,
)
from . import kserve, payload_log
from .pod import (
    KSERVE_CONTAINER,
    MODEL_URI_ENV,
    SCRATCH_DIR,
    SHM_VOLUME,
    STARTUP_FAILURES,
    STARTUP_PERIOD_SECONDS,
    TERMINATION_GRACE_SECONDS,
    fetch_resources,
    hardware,
    registry_env,
    security_context,
    shm_volumes,
    template_metadata,
    topology_spread,
)
from .workloads import COMPONENT, Workload, service_account_name

FETCH_CONTAINER = "fetch-model"
MODELS_VOLUME = "models"
LOG_DIR = f"{SCRATCH_DIR}/logs"  # TorchServe's logs: the root filesystem is read-only


def serving(ep: Endpoint) -> EngineServing:
    assert ep.engine_serving is not None  # resolve sets it for every engine but mlc
    return ep.engine_serving


def fetch_args(w: Workload) -> list[str]:
    """The model fetch's arguments: what it fetches and the layout it writes."""
    ep, es = w.endpoint, serving(w.endpoint)
    assert es.layout is not None and w.model_uri is not None
    args = ["fetch-model", "--model-uri", container_text(w.model_uri), "--layout", es.layout,
            "--model-name", es.model_name, "--dest", MODEL_DIR]
    if es.layout == "torchserve":  # its batching is the archive's registration
        b = ep.batching
        args += ["--max-batch-size", str(b.max_batch_size),
                 "--max-batch-delay-ms", str(round(b.max_latency_seconds * 1000)),
                 "--max-queue", str(b.max_queue)]
    return args


def fetch_container(project: ResolvedProject, w: Workload, knative: bool) -> dict[str, Any]:
    ep = w.endpoint
    return {
        "name": FETCH_CONTAINER,
        "image": ep.image.ref,
        "imagePullPolicy": pull_policy(ep.image),
        "command": ["python", "-m", "mlc.runtime"],
        "args": fetch_args(w),
        "env": sorted(registry_env(project), key=lambda e: e["name"]),
        "resources": fetch_resources(project, w),
        "securityContext": security_context("knative" if knative else "kubernetes"),
        "volumeMounts": [{"name": MODELS_VOLUME, "mountPath": MODEL_DIR},
                         {"name": "scratch", "mountPath": SCRATCH_DIR}],
    }


def engine_env(w: Workload) -> list[dict[str, Any]]:
    """The engine's own settings from the endpoint (its batching), and the user's env."""
    ep, es = w.endpoint, serving(w.endpoint)
    out: list[dict[str, Any]] = [{"name": "HOME", "value": SCRATCH_DIR}]
    if ep.engine == "mlserver":  # MLServer's adaptive batching (its model settings)
        out += [{"name": "MLSERVER_MODEL_MAX_BATCH_SIZE",
                 "value": str(ep.batching.max_batch_size)},
                {"name": "MLSERVER_MODEL_MAX_BATCH_TIME",
                 "value": repr(ep.batching.max_latency_seconds)}]
    if ep.engine == "torchserve":
        out += [{"name": "LOG_LOCATION", "value": LOG_DIR},
                {"name": "METRICS_LOCATION", "value": LOG_DIR}]
    if es.container is not None and w.model_uri is not None:
        out.append({"name": MODEL_URI_ENV, "value": container_text(w.model_uri)})
    out += [{"name": k, "value": v} for k, v in ep.env.items()]
    return sorted(out + secret_env(dict(ep.secrets)), key=lambda e: e["name"])


def probe(path: str, port: int, *, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period,
            "failureThreshold": failures, "timeoutSeconds": 2}


def ready_path(ep: Endpoint, es: EngineServing) -> str:
    if es.container is not None:
        return es.container.readiness_path
    if es.protocol == "v2":
        return "/v2/health/ready"
    return f"/v1/models/{es.model_name}"  # KServe's v1 protocol: 200 once the model is ready


def model_container(project: ResolvedProject, w: Workload, knative: bool) -> dict[str, Any]:
    ep, es = w.endpoint, serving(w.endpoint)
    out: dict[str, Any] = {}
    if es.container is None:
        out["modelFormat"] = {"name": es.model_format, **(
            {"version": es.model_format_version} if es.model_format_version else {})}
        out["runtime"] = es.runtime
        out["protocolVersion"] = es.protocol
    if ep.engine == "huggingface":
        # vLLM's OpenAI-compatible server, over the folder the fetch wrote, under the model's
        # name (the `model_name` label of vLLM's series, mlc/engine_metrics.py)
        out["args"] = [f"--model_name={es.model_name}", f"--model_dir={MODEL_DIR}",
                       "--backend=vllm"]
    out |= {
        "name": KSERVE_CONTAINER,
        "env": engine_env(w),
        "resources": resources(hardware(project, w)),
        "securityContext": security_context("knative" if knative else "kubernetes"),
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_DIR}],
    }
    ready = ready_path(ep, es)
    live = (es.container.liveness_path if es.container is not None
            else "/v2/health/live" if es.protocol == "v2" else ready)
    out["startupProbe"] = probe(live, es.http_port, period=STARTUP_PERIOD_SECONDS,
                                failures=STARTUP_FAILURES)
    out["livenessProbe"] = probe(live, es.http_port, period=10, failures=3)
    out["readinessProbe"] = probe(ready, es.http_port, period=5, failures=2)
    if es.container is not None:
        c = es.container
        out |= {"image": c.image.ref,
                "imagePullPolicy": pull_policy(c.image),
                "ports": [{"name": "http1" if knative else "http", "containerPort": c.port,
                           "protocol": "TCP"}]}
        if c.command:
            out["command"] = list(c.command)
        if c.args:
            out["args"] = list(c.args)
        # the user's server reads the registry itself, as mlc's server does
        env = {e["name"]: e for e in out["env"]}
        for e in registry_env(project):
            env.setdefault(e["name"], e)
        out["env"] = sorted(env.values(), key=lambda e: e["name"])
    else:
        out["volumeMounts"].insert(0, {"name": MODELS_VOLUME, "mountPath": MODEL_DIR,
                                       "readOnly": True})
    if hardware(project, w).shared_memory:  # vLLM's tensor-parallel workers, NCCL
        out["volumeMounts"].append(shared_memory_mount(SHM_VOLUME))
    return dict(sorted(out.items()))


def inference_service(project: ResolvedProject, w: Workload,
                      config_hash: str) -> dict[str, Any]:
    ep, es = w.endpoint, serving(w.endpoint)
    knative = ep.mode == "serverless"
    notes, fields = kserve.scaling(project, w, knative)
    notes[kserve.MODE] = "Knative" if knative else "Standard"
    if knative and ep.rollout.strategy == "canary":
        fields["canaryTrafficPercent"] = 0
    meta = template_metadata(project, w, config_hash, {
        "prometheus.io/port": str(es.scrape_port)})
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {}},
                                     *shm_volumes(project, w)]
    predictor: dict[str, Any] = {
        **fields,
        "serviceAccountName": service_account_name(ep),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        **scheduling(hardware(project, w)),
    }
    if es.container is None:
        volumes.insert(0, {"name": MODELS_VOLUME, "emptyDir": {}})
        predictor["initContainers"] = [fetch_container(project, w, knative)]
        predictor["model"] = model_container(project, w, knative)
    else:
        predictor["containers"] = [model_container(project, w, knative)]
    predictor["volumes"] = volumes
    if not knative:
        predictor["securityContext"] = pod_security_context()
        predictor["terminationGracePeriodSeconds"] = TERMINATION_GRACE_SECONDS
        predictor["topologySpreadConstraints"] = topology_spread(project, w,
                                                                 "pod-template-hash")
    predictor["labels"] = meta["labels"]
    predictor["annotations"] = meta["annotations"]
    log_to = payload_log.logger(project, ep)
    if log_to is not None:  # a drift check or quality monitor reads its prediction log
        predictor["logger"] = log_to
    return {
        "apiVersion": kserve.API_VERSION,
        "kind": "InferenceService",
        "metadata": metadata(project, w.name, origin=ep.origin, component=COMPONENT,
                             annotations=notes),
        "spec": {"predictor": predictor},
    }
