"""What an endpoint's engine can be measured by: SLOs, gates and autoscaling over its series.

An endpoint served by another engine than mlc's own is monitored through that engine's own
series (mlc/engine_metrics.py). A setting whose quantity the engine's series cannot give is
refused where ml.yaml sets it, and warned of (and left out of the rules, dashboard and
gates) where it is only a default, so that no rule or gate is written over series that do
not exist (a gate over nothing is never passed nor failed: docs/serving-metrics.md).

- MLC374 (error): an SLO objective that the engine's series cannot measure;
- MLC375 (warning): the same objective left at its default, not measured;
- MLC376 (error): a rollout gate, or a rollout strategy, that needs series the engine does
  not export (prediction drift and the shadow comparison need mlc's runtime);
- MLC377 (warning): such a gate left at its default, not measured;
- MLC378 (error): an LLM objective or gate (time to first token, tokens per second) on an
  engine that does not measure them (only `huggingface`, served by vLLM, does);
- MLC379 (error): autoscaling on requests or concurrency that the engine does not export.
"""

from __future__ import annotations

from typing import Any

from ... import engine_metrics as em
from ...schema.types import duration_seconds
from .context import Context

OBJECTIVE_NOT_MEASURED = "MLC374"
DEFAULT_OBJECTIVE_NOT_MEASURED = "MLC375"
GATE_NOT_MEASURED = "MLC376"
DEFAULT_GATE_NOT_MEASURED = "MLC377"
LLM_ONLY = "MLC378"
SCALING_NOT_MEASURED = "MLC379"

# (ml.yaml key under slo, quantity, its schema field)
_OBJECTIVES = (("availability", "errors", "availability"),
               ("latency", "latency_slo", "latency"),
               ("latencyTarget", "latency_slo", "latency_target"))
# (ml.yaml key under rollout.gates, quantity, its schema field)
_GATES = (("maxErrorRate", "errors", "max_error_rate"),
          ("maxLatencyP99", "latency_quantile", "max_latency_p99"),
          ("maxPredictionDrift", "prediction_drift", "max_prediction_drift"))
_LLM_SLO = (("firstTokenLatency", "first_token_latency"),
            ("firstTokenLatencyTarget", "first_token_latency_target"),
            ("tokensPerSecond", "tokens_per_second"),
            ("tokensPerSecondTarget", "tokens_per_second_target"))
_LLM_GATES = (("maxFirstTokenLatency", "max_first_token_latency"),
              ("minTokensPerSecond", "min_tokens_per_second"))
GATED = ("canary", "blueGreen")


def llm_slo(slo: Any) -> dict[str, Any]:
    """The IR's LLM objectives from the schema's `slo` (nothing when none is set)."""
    out: dict[str, Any] = {}
    if slo.first_token_latency is not None:
        out["ttft_seconds"] = duration_seconds(slo.first_token_latency)
        out["ttft_target"] = slo.first_token_latency_target
    if slo.tokens_per_second is not None:
        out["tokens_per_second"] = slo.tokens_per_second
        out["tokens_per_second_target"] = slo.tokens_per_second_target
    return out


def check_engine_metrics(ctx: Context, name: str, e: Any) -> None:
    """Refuse (or warn of) what `serving.<name>` asks that its engine's series cannot give."""
    path = ("serving", name)
    engine = e.engine
    if engine == "mlc":
        for key, field in _LLM_SLO[::2]:
            if getattr(e.slo, field) is not None:
                _llm_refused(ctx, name, engine, (*path, "slo", key))
        for key, field in _LLM_GATES:
            if getattr(e.rollout.gates, field) is not None:
                _llm_refused(ctx, name, engine, (*path, "rollout", "gates", key))
        return
    server = e.container.metrics if engine == "custom" and e.container is not None else None
    m = (em.custom(server, server.port or e.container.port) if server is not None
         else em.for_engine(engine))
    set_slo = e.slo.model_fields_set
    for key, quantity, field in _OBJECTIVES:
        why = m.why_not(quantity)
        if why is None:
            continue
        if field in set_slo:
            ctx.error(OBJECTIVE_NOT_MEASURED,
                      f"endpoint `{name}`: engine `{engine}` cannot measure `slo.{key}`: {why}",
                      (*path, "slo", key),
                      help="remove it; the engine's series that mlc reads are listed in "
                           "docs/serving-metrics.md, \"Engines\"")
        elif key != "latencyTarget":
            ctx.warning(DEFAULT_OBJECTIVE_NOT_MEASURED,
                        f"endpoint `{name}`: the default `slo.{key}` objective is not measured "
                        f"for engine `{engine}` ({why}); no rule or panel is written for it",
                        (*path, "engine"),
                        help="nothing to change unless the objective matters: then serve "
                             "the endpoint with an engine that measures it")
    if engine not in em.LLM_ENGINES:
        for key, field in _LLM_SLO[::2]:
            if getattr(e.slo, field) is not None:
                _llm_refused(ctx, name, engine, (*path, "slo", key))
        for key, field in _LLM_GATES:
            if getattr(e.rollout.gates, field) is not None:
                _llm_refused(ctx, name, engine, (*path, "rollout", "gates", key))
    r = e.rollout
    # an A/B is measured by mlc's router in front of the engine (its mlc_router_* series,
    # per variant); a serverless A/B is refused by resolve/engines.py (MLC392)
    if r.strategy == "shadow" or r.shadow_first is not None:
        key = "shadowFirst" if r.shadow_first is not None else "strategy"
        ctx.error(GATE_NOT_MEASURED,
                  f"endpoint `{name}`: rollout `{key}` needs mlc's runtime, which engine "
                  f"`{engine}` replaces: {em.RUNTIME_ONLY['shadow']}",
                  (*path, "rollout", key),
                  help="use `strategy: canary` or `blueGreen` with the engine's gates")
    if r.strategy in GATED:
        set_gates = r.gates.model_fields_set
        for key, quantity, field in _GATES:
            if getattr(r.gates, field) is None:
                continue
            why = m.why_not(quantity)
            if why is None:
                continue
            if field in set_gates:
                ctx.error(GATE_NOT_MEASURED,
                          f"endpoint `{name}`: engine `{engine}` cannot measure "
                          f"`rollout.gates.{key}`: {why}", (*path, "rollout", "gates", key),
                          help="set it to null" if key == "maxPredictionDrift" else
                          "remove it; the gates each engine measures are in "
                          "docs/serving-metrics.md, \"Engines\"")
            else:
                ctx.warning(DEFAULT_GATE_NOT_MEASURED,
                            f"endpoint `{name}`: the default gate `rollout.gates.{key}` is not "
                            f"measured for engine `{engine}` ({why}); the rollout runs "
                            "without it", (*path, "rollout", "strategy"),
                            help=f"set `rollout.gates.{key}: null` to say so in ml.yaml"
                            if key == "maxPredictionDrift" else None)
    metric = e.autoscaling.metric
    quantity = {"rps": "requests", "concurrency": "inflight"}.get(metric)
    if quantity and m.why_not(quantity):
        ctx.error(SCALING_NOT_MEASURED,
                  f"endpoint `{name}`: engine `{engine}` exports no series for autoscaling "
                  f"on `{metric}`: {m.why_not(quantity)}", (*path, "autoscaling", "metric"),
                  help="scale on `cpu`, or on a metric the engine exports "
                       "(docs/serving-metrics.md, \"Engines\")")


def _llm_refused(ctx: Context, name: str, engine: str, path: tuple[str, ...]) -> None:
    ctx.error(LLM_ONLY,
              f"endpoint `{name}`: `{'.'.join(path[2:])}` is an LLM objective, measured only "
              f"for engine {', '.join(sorted(em.LLM_ENGINES))} (vLLM's time-to-first-token and "
              f"token series); engine `{engine}` has none", path,
              help="remove it, or serve the model with `engine: huggingface`")
