"""What a rollout asks for that its endpoint's form cannot deliver: refused, never dropped.

Which system enforces an endpoint's gates (docs/delivery.md):
- online canary and blue-green: Argo Rollouts with the AnalysisTemplate;
- serverless canary (Knative), and KServe canary in KServe's Knative mode: the delivery
  workflow (backends/serving/gate_driver.py);
- a canary's shadow phase (`shadowFirst`): the same two, with the shadow comparison's
  queries, before the first step (shadow_phase below);
- an A/B rollout's gates are per-variant guardrails, enforced by the A/B guard
  (resolve/ab_guard.py, backends/serving/ab_guard.py) where the mlc router splits traffic;
- nothing else. Gates written for a shadow rollout, a blue-green switch on Knative or KServe,
  or a canary on KServe's Standard mode (no traffic split) are errors here.

Settings only another strategy reads (`steps`, `shadow`, `variants`, `autoPromote`,
`shadowFirst`) are
errors too. A rolling strategy ignores all of them, and `gates`, on purpose: it is how an
environment turns a rollout of the base file off (`rollout: {strategy: rolling}` in
environments/dev.yaml).
"""

from __future__ import annotations

from typing import Any

from ...schema.serving import Endpoint, Shadow
from ...schema.types import duration_seconds
from .. import ir
from .context import Context

UNENFORCEABLE_GATES = "MLC340"
KSERVE_STANDARD_CANARY = "MLC341"
IGNORED_SETTING = "MLC342"
ALIAS_NOT_PINNED = "MLC343"
# (field, ml.yaml key, the one strategy that reads it)
IGNORED_SETTINGS = (("steps", "steps", "canary"), ("shadow", "shadow", "shadow"),
                    ("variants", "variants", "ab"), ("auto_promote", "autoPromote", "blueGreen"),
                    ("shadow_first", "shadowFirst", "canary"))
# strategies that run two versions side by side, whose arms must not change under them
MULTI_VERSION = ("canary", "blueGreen", "shadow", "ab")


def check_rollout(ctx: Context, name: str, e: Endpoint, image_policy: str,
                  model: ir.Model) -> None:
    path = ("serving", name, "rollout")
    r = e.rollout
    if e.mode == "batch":
        return
    if r.strategy == "shadow" and "gates" in r.model_fields_set:
        ctx.error(UNENFORCEABLE_GATES, f"endpoint `{name}`: nothing enforces `gates` in a "
                  "shadow rollout: a shadow on its own is promoted by a person, so no version "
                  "is promoted or rolled back by them", (*path, "gates"),
                  help="to gate a new version on its shadow comparison, roll it out with "
                       "`strategy: canary` and `shadowFirst: {duration: 1h, gates: "
                       "{minAgreement: 0.95}}`: a failed shadow gate ends the rollout before "
                       "any client reaches it; else remove `gates:` (see docs/delivery.md)")
    # `gates` on an A/B rollout are its guardrails: ab_guard.py checks them and refuses
    # the forms that cannot take a variant's traffic away
    if r.strategy == "blueGreen" and (e.kserve or e.mode == "serverless"):
        where = "KServe" if e.kserve else "Knative (`mode: serverless`)"
        ctx.error(UNENFORCEABLE_GATES, f"endpoint `{name}`: a blue-green switch on {where} "
                  "has no preview and no gates: the new revision would take all traffic "
                  "unmeasured", (*path, "strategy"),
                  help="use `strategy: canary` with `steps: [{weight: 100, pause: 10m}]`: "
                       "all traffic at once, gated, rolled back on a failed gate")
    if r.strategy == "canary" and e.kserve and e.mode == "online":
        ctx.error(KSERVE_STANDARD_CANARY, f"endpoint `{name}`: KServe's Standard mode (an "
                  "online endpoint) has no traffic split, so a canary cannot be stepped or "
                  "gated", (*path, "strategy"),
                  help="set `mode: serverless` (KServe's Knative mode splits traffic by "
                       "`canaryTrafficPercent`), or " + (
                           "drop `kserve: true` for an Argo Rollout" if e.engine == "mlc"
                           else f"`strategy: rolling`: engine `{e.engine}` is always a "
                           "KServe InferenceService"))
    if r.strategy != "rolling":
        for field, key, owner in IGNORED_SETTINGS:
            if field in r.model_fields_set and owner != r.strategy:
                ctx.error(IGNORED_SETTING, f"endpoint `{name}`: `{key}` is used only by the "
                          f"{owner} strategy; {r.strategy} would ignore it", (*path, key),
                          help=f"remove `{key}:`, or use `strategy: {owner}`")
    if image_policy == "digest" and r.strategy in MULTI_VERSION:
        _check_pins(ctx, name, e, model)


def _check_pins(ctx: Context, name: str, e: Endpoint, model: ir.Model) -> None:
    """Arms that serve an alias load whatever it points at when a pod starts: a retrain
    that moves the alias changes a running arm at its next scale-up."""
    r = e.rollout
    default = model.production_alias
    arms: list[tuple[str, str, tuple]] = []
    if e.version is None and r.strategy != "ab":  # A/B: the variants serve, not the endpoint
        arms.append(("the endpoint", e.alias or default,
                     ("serving", name, "alias" if e.alias else "model")))
    if r.strategy == "shadow" and r.shadow is not None and r.shadow.version is None:
        arms.append(("its shadow", r.shadow.alias or model.candidate_alias,
                     ("serving", name, "rollout", "shadow")))
    if r.strategy == "ab":
        arms += [(f"variant `{v.name}`", v.alias or default,
                  ("serving", name, "rollout", "variants", i))
                 for i, v in enumerate(r.variants) if v.version is None]
    for arm, alias, where in arms:
        ctx.warning(ALIAS_NOT_PINNED, f"endpoint `{name}`: {arm} serves the registry alias "
                    f"`{alias}`, resolved whenever a pod starts: a retrain that moves it changes "
                    f"what a running {r.strategy} rollout serves, one new pod at a time", where,
                    help=f"pin versions with `mlc pin {ctx.env}`, which resolves the aliases "
                         f"against the registry and writes them into "
                         f"environments/{ctx.env}.yaml")


def shadow_phase(e: Endpoint, model_uri: str, log_uri: str) -> dict[str, Any] | None:
    """The IR fields of a canary's shadow phase (`rollout.shadowFirst`), or None.

    The shadow arm serves the endpoint's own model: what a sync changes is what the new
    version serves, so the stable pods (still on the previous version) copy their requests
    to it and compare; the copy's queue and timeout are the shadow strategy's defaults.
    """
    r = e.rollout
    first = r.shadow_first
    if first is None or r.strategy != "canary" or e.mode == "batch":
        return None
    g = first.gates
    defaults = Shadow.model_fields
    return {
        "shadow_phase": ir.ShadowPhase(
            duration_seconds=int(duration_seconds(first.duration)),
            gates=ir.ShadowGates(
                min_agreement=g.min_agreement, max_prediction_drift=g.max_prediction_drift,
                max_error_rate=g.max_error_rate,
                max_latency_p99_seconds=duration_seconds(g.max_latency_p99),
                interval_seconds=int(duration_seconds(g.interval)),
                failure_limit=g.failure_limit)),
        "shadow_model_uri": model_uri,
        "shadow_log_uri": log_uri,
        "shadow_percent": first.percent,
        "shadow_tolerance": first.tolerance,
        "shadow_max_queue": defaults["max_queue"].default,
        "shadow_timeout_seconds": duration_seconds(defaults["timeout"].default),
        # the primary server copies: a gateway's mirror would leave no comparison to gate on
        "traffic": "server",
    }
