"""A/B guardrails: `rollout.gates` on an `ab` rollout, checked and made final here.

The guard (backends/serving/ab_guard.py) is a CronWorkflow that measures each variant's
error ratio and p99 as the A/B router saw its requests, and stops a variant that fails
them by writing it into a ConfigMap the routers read (mlc/runtime/serve/weights_override.py).
Only the mlc router reads that override, so the other A/B forms are refused: a Knative
Route's or an HTTPRoute's weights are git's, and one Service over the variants' pods (KServe
raw mode) has no weights to take away. The baseline is never measured or stopped: the other
arms' traffic falls back to it (docs/delivery.md, "A/B guardrails").
"""

from __future__ import annotations

from ...schema.serving import Endpoint
from ...schema.types import duration_seconds
from .. import ir
from ..names import dns_label
from .context import Context

UNENFORCEABLE_GATES = "MLC340"  # delivery.py's code: a form that cannot enforce gates
AB_PREDICTION_DRIFT = "MLC365"
AB_GUARD_INTERVAL = "MLC366"
AB_BASELINE_WITHOUT_TRAFFIC = "MLC367"

# The rate window of the guard's queries: rate() needs a few scrapes to say anything.
MIN_WINDOW_SECONDS = 60
# A CronWorkflow starts at most once a minute, and `*/N` of the minutes field stops at 60.
MAX_INTERVAL_SECONDS = 3600
CRON_NAME_MAX = 52  # as backends/argo/schedules.py's NAME_MAX

_FORM_HELP = ("set `mode: online` without `kserve: true` (the A/B router reads the guard's "
              "override), or remove `gates:` and watch the per-variant metrics")


def _form(e: Endpoint, platform: ir.Platform) -> str | None:
    """Why the form of `e` cannot take a variant's traffic away, or None (the mlc router)."""
    if e.mode == "serverless":
        return ("its variants are split by a Knative Route, whose weights Argo CD keeps as "
                "git has them")
    if e.engine != "mlc":
        return None  # mlc's router in front of the variants' predictors (resolve/traffic.py)
    if e.kserve:
        return "one Service spreads requests over the variants' pods: there is no weight to set"
    if platform.gateway is not None and e.rollout.assignment is None:
        return ("the gateway's HTTPRoute splits its variants, and its weights are git's; "
                "with `assignment:` the A/B router splits them and the guard can stop one")
    return None


def schedule(interval_seconds: int) -> str:
    minutes = interval_seconds // 60
    return "* * * * *" if minutes == 1 else "0 * * * *" if minutes == 60 else \
        f"*/{minutes} * * * *"


def resolve_ab_guard(ctx: Context, name: str, e: Endpoint,
                     platform: ir.Platform) -> ir.AbGuard | None:
    r = e.rollout
    path = ("serving", name, "rollout", "gates")
    if r.strategy != "ab" or e.mode == "batch" or "gates" not in r.model_fields_set:
        return None
    ok = True
    why = _form(e, platform)
    if why is not None:
        ok = False
        ctx.error(UNENFORCEABLE_GATES, f"endpoint `{name}`: nothing can enforce A/B "
                  f"guardrails here: {why}", path, help=_FORM_HELP)
    g = r.gates
    if "max_prediction_drift" in g.model_fields_set and g.max_prediction_drift is not None:
        ok = False
        ctx.error(AB_PREDICTION_DRIFT, f"endpoint `{name}`: `maxPredictionDrift` is not an A/B "
                  "guardrail: variants are expected to predict differently, and which one "
                  "is better is the verdict's question", (*path, "maxPredictionDrift"),
                  help="remove `maxPredictionDrift:` (the guard measures `maxErrorRate` and "
                       "`maxLatencyP99` per variant); compare the variants with `verdict:`")
    interval = int(duration_seconds(g.interval))
    if interval % 60 or not 60 <= interval <= MAX_INTERVAL_SECONDS or 3600 % interval:
        ok = False
        ctx.error(AB_GUARD_INTERVAL, f"endpoint `{name}`: the A/B guard runs as a "
                  f"CronWorkflow, on whole minutes that divide an hour, not every "
                  f"{g.interval}", (*path, "interval"),
                  help="use one of 1m, 2m, 3m, 4m, 5m, 6m, 10m, 12m, 15m, 20m, 30m, 60m")
    variants = {v.name: v for v in r.variants}
    baseline = (r.verdict.baseline if r.verdict is not None and r.verdict.baseline in variants
                else r.variants[0].name if r.variants else None)
    if baseline is None:
        return None
    if variants[baseline].weight == 0:
        ok = False
        index = [v.name for v in r.variants].index(baseline)
        ctx.error(AB_BASELINE_WITHOUT_TRAFFIC, f"endpoint `{name}`: the baseline variant "
                  f"`{baseline}` takes no traffic, so a guard that stopped the others would "
                  "leave no variant to send requests to", ("serving", name, "rollout",
                                                           "variants", index, "weight"),
                  help="give the baseline a weight, or name a baseline with traffic in "
                       "`verdict.baseline` (the first variant otherwise)")
    if not ok:
        return None
    return ir.AbGuard(
        # Argo suffixes a CronWorkflow's runs with a timestamp: 52 characters leave room
        workflow=dns_label("ab-guard", name, max_len=CRON_NAME_MAX),
        config_map=dns_label(name, "ab-guard"), account=dns_label(name, "ab-guard"),
        schedule=schedule(interval), baseline=baseline,
        guarded=sorted(v.name for v in r.variants if v.name != baseline and v.weight > 0),
        max_error_rate=g.max_error_rate,
        max_latency_p99_seconds=duration_seconds(g.max_latency_p99),
        interval_seconds=interval, failure_limit=g.failure_limit)
