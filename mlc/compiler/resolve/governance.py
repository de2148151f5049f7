"""Whether an environment is production, its guardrails, and the risks it accepts."""

from __future__ import annotations

from typing import Any

from ...schema.types import duration_seconds
from .. import ir
from ..cost import prices
from .context import Context

PRODUCTION_AND_DEVELOPMENT = "MLC507"
EXPECTED_OVER_TIMEOUT = "MLC509"
# Environments production by name, unless they say otherwise (or are development).
PRODUCTION_NAMES = ("prod", "production")


def production_settings(ctx: Context) -> dict[str, Any]:
    """The ir.Platform fields of the built-in policies."""
    p = ctx.project.platform
    production = p.production
    if production is None:
        production = ctx.env in PRODUCTION_NAMES and not ctx.development
    elif production and ctx.development:
        ctx.error(PRODUCTION_AND_DEVELOPMENT, f"environment `{ctx.env}` is marked both "
                  "production and development", ("platform", "production"),
                  help="drop `development: true` from a production environment, or set "
                  "`production: false` in a throw-away one")
    g = p.guardrails
    return {"production": production, "max_gpus_per_replica": g.max_gpus_per_replica,
            "gpu_types": sorted(g.gpu_types) if g.gpu_types is not None else None,
            "min_training_interval_seconds": int(duration_seconds(g.min_training_interval)),
            "cost": resolve_cost(ctx)}


def resolve_accepted_risks(ctx: Context) -> list[ir.AcceptedRisk]:
    out = [ir.AcceptedRisk(code=a.code, subject=a.subject, reason=a.reason,
                           origin=ctx.origin(("acceptedRisks", i, "code")))
           for i, a in enumerate(ctx.project.accepted_risks)]
    return sorted(out, key=lambda a: (a.code, a.subject))


def resolve_cost(ctx: Context) -> ir.CostSettings:
    c = ctx.project.platform.cost
    p = c.prices
    return ir.CostSettings(
        cpu_core_hour=prices.CPU_CORE_HOUR if p.cpu_core_hour is None else p.cpu_core_hour,
        memory_gib_hour=prices.MEMORY_GIB_HOUR if p.memory_gib_hour is None
        else p.memory_gib_hour,
        gpu_hour=dict(sorted({**prices.GPU_HOUR, **p.gpu_hour}.items())),
        spot_discount=prices.SPOT_DISCOUNT if p.spot_discount is None else p.spot_discount,
        monthly_budget=c.monthly_budget, job_duration_seconds=int(
            duration_seconds(c.job_duration)), cost_center=c.cost_center)


def check_expected_durations(ctx: Context) -> None:
    for name in sorted(ctx.project.models):
        t = ctx.project.models[name].training
        if duration_seconds(t.expected_duration) > duration_seconds(t.timeout):
            ctx.error(EXPECTED_OVER_TIMEOUT, f"model `{name}`: training.expectedDuration "
                      f"`{t.expected_duration}` is longer than its timeout `{t.timeout}`, "
                      "after which every run is stopped",
                      ("models", name, "training", "expectedDuration"),
                      help="lower expectedDuration to a usual run's length, or raise timeout")


def cost_labels(ctx: Context, platform: ir.Platform) -> dict[str, str]:
    """Cost-allocation labels (ir.COST_LABELS) for every object and pod; OpenCost aggregates
    by any label, these included."""
    meta = ctx.project.metadata
    out = {"app": meta.name, "env": ctx.env}
    if meta.team:
        out["team"] = meta.team
    if platform.cost.cost_center:
        out["department"] = platform.cost.cost_center
    return out
