"""Risks of a change that weakens how an endpoint is protected or grows what it costs.

Read off the resolved projects of both sides, in every environment (the production-only
rules are the policies': mlc/compiler/policy/). Codes are documented in plan-and-apply.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import HIGH, MEDIUM, Risk

STRATEGY_WEAKENED = "strategy-weakened"
REPLICAS_LOWERED = "replicas-lowered"
AB_WEIGHT_CHANGE = "ab-weight-change"
AB_GUARD_REMOVED = "ab-guard-removed"
GPU_REPLICAS_ADDED = "gpu-replicas-added"
GATED = ("canary", "blueGreen")


def weakening_risks(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Risk]:
    if old is None:
        return []
    before, after = _d(old, "endpoints"), _d(new, "endpoints")
    production = bool((new.get("platform") or {}).get("production"))
    risks = []
    for name in sorted(set(before) & set(after)):
        was, now = before[name], after[name]
        subject = f"serving.{name}"
        old_strategy, new_strategy = _strategy(was), _strategy(now)
        if old_strategy in GATED and new_strategy not in GATED:
            risks.append(Risk(STRATEGY_WEAKENED, HIGH, f"endpoint `{name}`: the rollout "
                              f"strategy changes from {old_strategy} to {new_strategy}: new "
                              "models no longer pass the rollout gates", subject=subject))
        low_was, low_now = _range(was)[0], _range(now)[0]
        if production and low_now < low_was:
            risks.append(Risk(REPLICAS_LOWERED, MEDIUM, f"endpoint `{name}`: the fewest "
                              f"replicas go from {low_was} to {low_now} in production",
                              subject=subject))
        if old_strategy == new_strategy == "ab" and _weights(was) != _weights(now):
            shown = ", ".join(f"{v} {w}%" for v, w in sorted(_weights(now).items()))
            risks.append(Risk(AB_WEIGHT_CHANGE, MEDIUM, f"endpoint `{name}`: the A/B split "
                              f"changes to {shown}: users move between variants, and the "
                              "experiment's numbers restart", subject=subject))
        if _guard(was) and not _guard(now) and new_strategy == "ab":
            risks.append(Risk(AB_GUARD_REMOVED, MEDIUM, f"endpoint `{name}`: the A/B "
                              "guardrails go: a failing variant keeps its traffic, and the "
                              "routers stop reading the guard's override (variants it "
                              "stopped serve again)", subject=subject))
        gpus_was, gpus_now = _gpus(old, was), _gpus(new, now)
        high_was, high_now = _range(was)[1], _range(now)[1]
        if gpus_now and gpus_now * high_now > gpus_was * high_was:
            risks.append(Risk(GPU_REPLICAS_ADDED, MEDIUM, f"endpoint `{name}`: up to "
                              f"{gpus_now * high_now} GPUs (was {gpus_was * high_was}): "
                              "cost, and capacity to schedule them", subject=subject))
    return risks


def _guard(endpoint: Mapping[str, Any]) -> dict | None:
    guard = (endpoint.get("rollout") or {}).get("ab_guard")
    return guard if isinstance(guard, dict) else None


def guard_notes(new: Mapping[str, Any]) -> list[str]:
    """What the plan says about the A/B guardrails in force: they act without a commit."""
    out = []
    for name, endpoint in sorted(_d(new, "endpoints").items()):
        guard = _guard(endpoint)
        if guard is not None:
            out.append(f"endpoint `{name}`: A/B guardrails: CronWorkflow {guard['workflow']} "
                       f"may stop {', '.join(guard['guarded']) or 'no variant'} (never the "
                       f"baseline {guard['baseline']}) by writing ConfigMap "
                       f"{guard['config_map']}, which this plan does not show")
    return out


def _d(ir: Mapping[str, Any], key: str) -> dict[str, dict]:
    value = ir.get(key)
    return {k: v for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) \
        else {}


def _strategy(endpoint: Mapping[str, Any]) -> str:
    return str((endpoint.get("rollout") or {}).get("strategy"))


def _range(endpoint: Mapping[str, Any]) -> tuple[int, int]:
    fixed = endpoint.get("replicas")
    if fixed is not None:
        return int(fixed), int(fixed)
    auto = endpoint.get("autoscaling") or {}
    return int(auto.get("min_replicas") or 0), int(auto.get("max_replicas") or 0)


def _weights(endpoint: Mapping[str, Any]) -> dict[str, int]:
    return {str(v.get("name")): int(v.get("weight") or 0)
            for v in (endpoint.get("rollout") or {}).get("variants") or []
            if isinstance(v, dict)}


def _gpus(ir: Mapping[str, Any], endpoint: Mapping[str, Any]) -> int:
    hardware = _d(ir, "hardware").get(str(endpoint.get("hardware"))) or {}
    return int(hardware.get("gpu_count") or 0)
