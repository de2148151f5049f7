"""What one server needs to know: the endpoint's settings from project.json, plus the
environment the manifests (or `mlc run`) set: MLflow, the prediction log, Feast, limits."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .explain import ExplainSettings

# What a server that its config names no variant or role for is: the endpoint's one server.
DEFAULT_VARIANT = "primary"
# On SIGTERM: keep answering this long with readiness false, so that a Service still routing
# here during endpoint propagation finds an open socket, not connection refused...
DEFAULT_DRAIN_SECONDS = 5.0
# ...then give the requests in flight this long to finish (uvicorn's graceful shutdown)
DEFAULT_SHUTDOWN_TIMEOUT = 10
# A request's body must be complete this long after its headers (body.py), as the headers
# must be within the header timeout: 1 MiB (the default body limit) at 100 kB/s fits.
DEFAULT_BODY_TIMEOUT = 10.0
# How often a primary re-reads its mounted config's mirror section (config_reload.py): a
# small share of the kubelet's own refresh delay, which the shadow phase's first measurement
# waits for (shadow_queries.CONFIG_PROPAGATION_SECONDS).
DEFAULT_CONFIG_RELOAD_SECONDS = 5.0
CONFIG_RELOAD_SECONDS_ENV = "MLC_CONFIG_RELOAD_SECONDS"


@dataclass(frozen=True)
class MirrorSettings:
    """Where a primary copies a share of its requests: its shadow (see shadow.py)."""

    url: str
    percent: int
    task: str  # classification: agreement is the same class; regression: within tolerance
    tolerance: float
    max_queue: int
    timeout_seconds: float

    @classmethod
    def from_config(cls, doc: dict | None) -> MirrorSettings | None:
        if not doc:
            return None
        return cls(url=doc["url"].rstrip("/"), percent=int(doc["percent"]), task=doc["task"],
                   tolerance=float(doc["tolerance"]), max_queue=int(doc["max_queue"]),
                   timeout_seconds=float(doc["timeout_seconds"]))


@dataclass(frozen=True)
class RefusalRate:
    """How many overload refusals a second are answered in full (a token bucket)."""

    rate: float = 500.0  # refusals a second, sustained
    burst: int = 100  # refusals answered at once after a quiet spell
    max_parked: int = 256  # connections waiting for their refusal; past it, answered at once

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RefusalRate:
        env = os.environ if env is None else env
        d = cls()
        rate = cls(rate=float(env.get("MLC_REFUSAL_RATE", d.rate)),
                   burst=int(env.get("MLC_REFUSAL_BURST", d.burst)),
                   max_parked=int(env.get("MLC_REFUSAL_MAX_PARKED", d.max_parked)))
        if rate.rate <= 0 or rate.burst < 1 or rate.max_parked < 0:
            raise ValueError(f"MLC_REFUSAL_RATE must be above 0, MLC_REFUSAL_BURST at least 1 "
                             f"and MLC_REFUSAL_MAX_PARKED at least 0: {rate}")
        return rate


@dataclass
class ServeSettings:
    endpoint: str
    model_uri: str
    tracking_uri: str
    model_names: tuple[str, ...] = ()  # names /v2/models/{name} answers to (+ the endpoint)
    feature_types: dict[str, str] = field(default_factory=dict)
    max_batch_size: int = 32
    max_latency: float = 0.005
    max_queue: int = 256
    # the endpoint's latency SLO: a request expected to wait longer is refused (503) at once
    latency_slo_seconds: float | None = None
    max_body_bytes: int = 1 << 20
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT
    prediction_log_uri: str | None = None
    prediction_log_sample: float = 0.0
    online_features: tuple[Path, str, tuple[str, ...]] | None = None  # repo, service, keys
    # the model's entity join keys and their types: the prediction log records them
    entity_keys: dict[str, str] = field(default_factory=dict)
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    shutdown_timeout_seconds: int = DEFAULT_SHUTDOWN_TIMEOUT
    model_thread: bool | None = None  # the model in a thread, on the loop, or None: by speed
    # the registry's model loaded and run in a process of its own (model_process.py says
    # why); False: in the server's own process
    model_process: bool = True
    retry_after_seconds: int = 1
    # overload refusals answered in full per second; past it, parked (admission.py)
    refusal_rate: RefusalRate = field(default_factory=RefusalRate)
    load_retry_max_seconds: float = 30.0
    role: str = "primary"  # primary, shadow or variant
    # the `variant` label of every metric and log line: the A/B variant, or the role
    variant: str = DEFAULT_VARIANT
    mirror: MirrorSettings | None = None
    # the mounted endpoint config, which a primary keeps reading for its mirror section
    # (config_reload.py), every `config_reload_seconds`; None: nothing to follow
    config_path: Path | None = None
    config_reload_seconds: float = DEFAULT_CONFIG_RELOAD_SECONDS
    # the endpoint's `allowPickle`: load a model not in mlc's format with mlflow.pyfunc;
    # False leaves it to the operator's MLC_ALLOW_PICKLE (loader.py)
    allow_pickle: bool = False
    # `explain:` of the endpoint: POST /explain answered within these bounds; None: 404
    explain: ExplainSettings | None = None


def workload_config(env: dict[str, str]) -> dict:
    """This server's part of the endpoint, as the manifests mount it (MLC_ENDPOINT_CONFIG):
    which model a primary, shadow or A/B variant serves, the name its metrics carry, its
    batching and prediction log. Absent under `mlc run`, where project.json says it all."""
    path = env.get("MLC_ENDPOINT_CONFIG")
    if not path or not Path(path).is_file():
        return {}
    return json.loads(Path(path).read_text(encoding="utf-8"))


def config_reload_seconds(env: dict[str, str]) -> float:
    seconds = float(env.get(CONFIG_RELOAD_SECONDS_ENV) or DEFAULT_CONFIG_RELOAD_SECONDS)
    if seconds <= 0:
        raise ValueError(f"{CONFIG_RELOAD_SECONDS_ENV} must be above 0: {seconds}")
    return seconds


def settings_for_endpoint(project, name: str, env: dict[str, str] | None = None
                          ) -> ServeSettings:
    """Settings of endpoint `name` of a ResolvedProject: project.json, then the workload's
    mounted config, then MLC_*/MLflow environment variables, each overriding the one before."""
    from mlc.runtime.prediction_log import resolve_uri

    env = dict(os.environ if env is None else env)
    workload = workload_config(env)
    batching = workload.get("batching") or {}
    log = workload.get("prediction_log") or {}
    if name not in project.endpoints:
        raise SystemExit(f"error: no endpoint `{name}` in project `{project.name}` (known: "
                         f"{', '.join(project.endpoints) or 'none'})")
    e = project.endpoints[name]
    online = None
    if e.online_features:
        repo = env.get("MLC_FEAST_REPO")
        if not repo:
            raise SystemExit("error: endpoint looks features up online but MLC_FEAST_REPO "
                             "is not set")
        online = (Path(repo), e.feature_service,
                  tuple(project.models[e.model].entity_keys))
    return ServeSettings(
        endpoint=workload.get("metrics_endpoint") or e.name,
        model_uri=env.get("MLC_MODEL_URI") or workload.get("model_uri") or e.model_uri,
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or project.platform.mlflow_tracking_uri,
        model_names=(e.registered_name, e.model),
        feature_types={r.field: r.type for r in e.input_features},
        max_batch_size=batching.get("max_batch_size", e.batching.max_batch_size),
        max_latency=batching.get("max_latency_seconds", e.batching.max_latency_seconds),
        max_queue=batching.get("max_queue", e.batching.max_queue),
        latency_slo_seconds=e.slo.latency_seconds,
        max_body_bytes=int(env.get("MLC_MAX_BODY_BYTES", 1 << 20)),
        body_timeout_seconds=float(env.get("MLC_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT)),
        prediction_log_uri=resolve_uri(env.get("MLC_PREDICTION_LOG_URI") or log.get("uri")
                                       or e.prediction_log_uri),
        prediction_log_sample=log.get("sample", e.prediction_log_sample),
        online_features=online,
        entity_keys={x.join_key: x.type for x in project.entities.values()
                     if x.join_key in project.models[e.model].entity_keys},
        drain_seconds=float(env.get("MLC_DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS)),
        shutdown_timeout_seconds=int(env.get("MLC_SHUTDOWN_TIMEOUT_SECONDS",
                                             DEFAULT_SHUTDOWN_TIMEOUT)),
        model_thread={"1": True, "0": False}.get(env.get("MLC_MODEL_THREAD", "auto")),
        model_process=env.get("MLC_MODEL_PROCESS", "1") != "0",
        refusal_rate=RefusalRate.from_env(env),
        role=workload.get("role") or "primary",
        variant=workload.get("variant") or workload.get("role") or DEFAULT_VARIANT,
        mirror=MirrorSettings.from_config(workload.get("mirror")),
        config_path=Path(env["MLC_ENDPOINT_CONFIG"]) if workload else None,
        config_reload_seconds=config_reload_seconds(env),
        allow_pickle=e.allow_pickle,
        explain=None if e.explain is None else ExplainSettings(
            max_rows=e.explain.max_rows, samples=e.explain.samples,
            background=e.explain.background))
