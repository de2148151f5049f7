"""How live traffic reaches an endpoint's A/B variants and its shadow, decided once here.

Each form of endpoint splits traffic its own way, and not every way keeps the promise that
ml.yaml makes: a Knative Route splits exactly (but at random, per request), a gateway's
HTTPRoute splits by weight and mirrors a share, the A/B router (mlc/runtime/serve/router.py)
splits exactly and by a sticky key; one Service over the variants' pods splits by pod count.
Where a choice cannot honour what ml.yaml says, the project is refused here, with the fix.
"""

from __future__ import annotations

import math

from .. import ir
from ..diagnostics import did_you_mean
from .context import NAME_CLASH, WRONG_KIND, Context

POD_RATIO = "MLC350"
NO_STICKY_KEY = "MLC351"
UNKNOWN_KEY = "MLC352"
GATEWAY_UNUSED = "MLC353"

ROUTER = "router"  # the A/B router's workload is `<endpoint>-router`
# How far (in percentage points) a variant's share of pods may be from its weight where
# nothing but pod counts splits the traffic.
POD_RATIO_TOLERANCE = 5


def replicas_for_share(n: int, share: int, floor: int) -> int:
    """Replicas for a server that takes `share` percent of `n` replicas' traffic.

    Rounded up, so that a small share still gets a server and no share gets less capacity
    than its traffic needs; a share of 0 (an A/B variant switched off) gets no replicas.
    """
    return 0 if share == 0 else max(floor, math.ceil(n * share / 100))


def traffic(ctx: Context, name: str, e, model: ir.Model, platform: ir.Platform) -> str | None:
    """The `Rollout.traffic` of endpoint `name` (see ir.Rollout), after checking it."""
    r, path = e.rollout, ("serving", name, "rollout")
    if r.assignment is not None and r.strategy != "ab":
        ctx.warning(WRONG_KIND, f"`assignment` is ignored: endpoint `{name}` uses the "
                    f"{r.strategy} strategy", (*path, "assignment"),
                    help="set `strategy: ab`, or remove `assignment:`")
    if e.mode == "batch" or r.strategy not in ("ab", "shadow"):
        return None
    gateway_routes = e.mode == "online" and not e.kserve
    if platform.gateway is not None and not gateway_routes:
        ctx.warning(GATEWAY_UNUSED, f"the gateway does not route endpoint `{name}`: "
                    f"{'KServe' if e.kserve else 'Knative'} gives it its own address, so "
                    + ("the primary server mirrors to the shadow" if r.strategy == "shadow"
                       else "the variants are split " + ("by Knative" if e.mode == "serverless"
                                                         else "by mlc's A/B router"
                                                         if engine_routed(e)
                                                         else "by pod count")),
                    (*path, "strategy"), help="use `mode: online` without `kserve: true` "
                    "for the gateway to route it, or ignore this warning")
    if r.strategy == "shadow":
        return "gateway" if platform.gateway is not None and gateway_routes else "server"
    if r.assignment is not None:
        _check_key(ctx, name, r.assignment, model, path)
    if e.mode == "serverless":
        if r.assignment is not None:
            ctx.error(NO_STICKY_KEY, f"endpoint `{name}` is serverless: Knative splits its "
                      "A/B traffic per request at random and cannot keep one "
                      f"{'header' if r.assignment.header else 'field'} on one variant",
                      (*path, "assignment"), help="remove `assignment:` (each request is "
                      "assigned at random, by the weights), or use `mode: online`, where "
                      "the A/B router assigns by the key")
        return "knative"
    if engine_routed(e):
        _check_router_name(ctx, name, r, path)
        return "router"  # in front of the variants' InferenceServices
    if e.kserve:
        if r.assignment is not None:
            ctx.error(NO_STICKY_KEY, f"endpoint `{name}` is served by KServe in raw mode: one "
                      "Service spreads requests over the variants' pods and cannot keep a "
                      "key on one variant", (*path, "assignment"),
                      help="remove `kserve: true` (the A/B router assigns by the key), or "
                      "remove `assignment:`")
        _check_pod_ratio(ctx, name, e, path)
        return "pods"
    if platform.gateway is not None and r.assignment is None:
        return "gateway"
    _check_router_name(ctx, name, r, path)
    # a gateway's HTTPRoute cannot hash a key into weights: it sends all to the router
    return "router"


def engine_routed(e) -> bool:
    """An online A/B endpoint of another engine: mlc's router (a Deployment) forwards each
    request unchanged to its variant's KServe predictor, whatever the protocol."""
    return e.engine != "mlc" and e.mode == "online" and e.rollout.strategy == "ab"


def _check_router_name(ctx: Context, name: str, r, path) -> None:
    for i, v in enumerate(r.variants):
        if v.name == ROUTER:  # both would be the workload and Service `<endpoint>-router`
            ctx.error(NAME_CLASH, f"variant `{v.name}` of endpoint `{name}` has the name of "
                      "the endpoint's A/B router", (*path, "variants", i, "name"),
                      help="rename the variant")


def _check_key(ctx: Context, name: str, assignment, model: ir.Model, path) -> None:
    if assignment.field is None:
        return
    known = sorted({*model.entity_keys, *(f.field for f in model.features)})
    if assignment.field not in known:
        ctx.error(UNKNOWN_KEY, f"endpoint `{name}` assigns variants by `{assignment.field}`, "
                  f"which requests to model `{model.name}` do not carry",
                  (*path, "assignment", "field"),
                  help=did_you_mean(assignment.field, known)
                  or f"use one of its entity keys or inputs: {', '.join(known)}")


def _check_pod_ratio(ctx: Context, name: str, e, path) -> None:
    """One Service over all variants' pods splits by pod count: refuse weights that the
    replicas (at their floor: fixed replicas, or the autoscaling minimum) miss by more than
    POD_RATIO_TOLERANCE points."""
    a = e.autoscaling
    n = e.replicas if e.replicas is not None else a.min_replicas or a.max_replicas
    pods = {v.name: replicas_for_share(n, v.weight, 1) for v in e.rollout.variants}
    total = sum(pods.values())
    for i, v in enumerate(e.rollout.variants):
        share = 100 * pods[v.name] / total if total else 0
        if abs(share - v.weight) > POD_RATIO_TOLERANCE:
            split = ", ".join(f"{k} {p}" for k, p in pods.items())
            ctx.error(POD_RATIO, f"variant `{v.name}` of endpoint `{name}` would take about "
                      f"{share:.0f}% of requests, not {v.weight}%: its traffic is split by "
                      f"pod count (pods: {split}) and the replica floor cannot come within "
                      f"{POD_RATIO_TOLERANCE} points of the weights",
                      (*path, "variants", i, "weight"),
                      help="remove `kserve: true` (the A/B router splits by weight exactly), "
                      "use `mode: serverless` (Knative splits exactly), or set replicas whose "
                      "ratio matches the weights")
            return
