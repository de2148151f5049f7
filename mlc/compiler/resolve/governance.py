"""Whether an environment is production, its guardrails, and the risks it accepts."""

from __future__ import annotations

from typing import Any

from ...schema.types import duration_seconds
from .. import ir
from .context import Context

PRODUCTION_AND_DEVELOPMENT = "MLC507"
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
            "min_training_interval_seconds": int(duration_seconds(g.min_training_interval))}


def resolve_accepted_risks(ctx: Context) -> list[ir.AcceptedRisk]:
    out = [ir.AcceptedRisk(code=a.code, subject=a.subject, reason=a.reason,
                           origin=ctx.origin(("acceptedRisks", i, "code")))
           for i, a in enumerate(ctx.project.accepted_risks)]
    return sorted(out, key=lambda a: (a.code, a.subject))
