"""The built-in policies: what a production environment may not run without saying so.

Each takes the resolved project of the new tree (and, for "gates may not loosen", the one of
the tree it replaces) and returns violations with a stable code and a subject, the ml.yaml
path an `acceptedRisks:` entry names to let it through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..cron import frequency

UNGATED_ROLLOUT = "MLC500"
GATE_LOOSENED = "MLC501"
TOO_FEW_REPLICAS = "MLC502"
IMAGE_BY_TAG = "MLC503"
GPU_OVER_CAP = "MLC504"
SCALE_TO_ZERO = "MLC505"
TRAINING_TOO_OFTEN = "MLC506"
OVER_BUDGET = "MLC508"  # checked by the cost package, in every environment with a budget
USER_POLICY = "MLC510"  # a rule of the policies file (user.py)
POLICY_CODES = (UNGATED_ROLLOUT, GATE_LOOSENED, TOO_FEW_REPLICAS, IMAGE_BY_TAG, GPU_OVER_CAP,
                SCALE_TO_ZERO, TRAINING_TOO_OFTEN, OVER_BUDGET, USER_POLICY)
MIN_REPLICAS = 2
# Strategies that shift traffic step by step behind the rollout gates (analysis).
GATED = ("canary", "blueGreen")


@dataclass(frozen=True, order=True)
class Violation:
    code: str
    subject: str
    message: str
    blocks: bool = True  # apply refuses it unless accepted; False: shown only (a warning)


IR = Mapping[str, Any]


def violations(old: IR | None, new: IR) -> list[Violation]:
    """Every built-in policy's violations in `new`; none outside production."""
    platform = new.get("platform") or {}
    if not platform.get("production"):
        return []
    checks: list[Callable[[IR | None, IR], Iterator[Violation]]] = [
        _ungated, _loosened, _replicas, _images, _gpus, _scale_to_zero, _training]
    return sorted({v for check in checks for v in check(old, new)})


def _d(ir: IR | None, key: str) -> dict[str, dict]:
    value = (ir or {}).get(key)
    return {k: v for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) \
        else {}


def _serving(ir: IR) -> Iterator[tuple[str, dict]]:
    for name, e in sorted(_d(ir, "endpoints").items()):
        if e.get("mode") not in ("batch", "stream"):  # they serve no requests
            yield name, e


def _ungated(_old: IR | None, new: IR) -> Iterator[Violation]:
    for name, e in _serving(new):
        strategy = (e.get("rollout") or {}).get("strategy")
        if strategy not in GATED:
            yield Violation(UNGATED_ROLLOUT, f"serving.{name}", f"endpoint `{name}` serves "
                            f"production traffic with the `{strategy}` strategy: a new model "
                            "reaches every request without passing the rollout gates")


def _loosened(old: IR | None, new: IR) -> Iterator[Violation]:
    if old is None:
        return
    before = _d(old, "endpoints")
    for name, e in _serving(new):
        if name not in before:
            continue
        was = (before[name].get("rollout") or {}).get("gates") or {}
        now = (e.get("rollout") or {}).get("gates") or {}
        for key, label in (("max_latency_p99_seconds", "max p99 latency"),
                           ("max_error_rate", "max error rate"),
                           ("max_prediction_drift", "max prediction drift")):
            if _looser_max(was.get(key), now.get(key)):
                yield Violation(GATE_LOOSENED, f"serving.{name}.rollout.gates",
                                f"endpoint `{name}`: the rollout gate's {label} loosens from "
                                f"{_shown(was.get(key))} to {_shown(now.get(key))}")
    old_models = _d(old, "models")
    for name, m in sorted(_d(new, "models").items()):
        if name not in old_models:
            continue
        was_gates = {g.get("metric"): g for g in old_models[name].get("gates") or []}
        now_gates = {g.get("metric"): g for g in m.get("gates") or []}
        for metric in sorted(was_gates, key=str):
            was, now = was_gates[metric], now_gates.get(metric, {})
            loose = _looser_max(was.get("max"), now.get("max")) or _looser_min(
                was.get("min"), now.get("min"))
            if loose:
                yield Violation(GATE_LOOSENED, f"models.{name}.gates",
                                f"model `{name}`: the gate on `{metric}` loosens from "
                                f"{_gate_text(was)} to {_gate_text(now)}")
        was_c = old_models[name].get("compare_with_production") or {}
        now_c = m.get("compare_with_production") or {}
        if was_c and _looser_max(was_c.get("max_regression"), now_c.get("max_regression")):
            yield Violation(GATE_LOOSENED, f"models.{name}.gates",
                            f"model `{name}`: the allowed regression against production "
                            f"loosens from {_shown(was_c.get('max_regression'))} to "
                            f"{_shown(now_c.get('max_regression'))}")


def _looser_max(was: Any, now: Any) -> bool:
    return was is not None and (now is None or now > was)


def _looser_min(was: Any, now: Any) -> bool:
    return was is not None and (now is None or now < was)


def _shown(value: Any) -> str:
    return "none" if value is None else f"{value:g}"


def _gate_text(gate: Mapping[str, Any]) -> str:
    parts = [f">= {gate['min']:g}" if gate.get("min") is not None else "",
             f"<= {gate['max']:g}" if gate.get("max") is not None else ""]
    return " and ".join(p for p in parts if p) or "no gate"


def _lowest_replicas(e: Mapping[str, Any]) -> int:
    fixed = e.get("replicas")
    return int(fixed) if fixed is not None else int((e.get("autoscaling") or {})
                                                     .get("min_replicas") or 0)


def _replicas(_old: IR | None, new: IR) -> Iterator[Violation]:
    for name, e in _serving(new):
        lowest = _lowest_replicas(e)
        if 0 < lowest < MIN_REPLICAS:
            yield Violation(TOO_FEW_REPLICAS, f"serving.{name}", f"endpoint `{name}` may run "
                            f"{lowest} replica: one node drain or crash takes it down "
                            f"(production needs at least {MIN_REPLICAS})")


def _scale_to_zero(_old: IR | None, new: IR) -> Iterator[Violation]:
    for name, e in _serving(new):
        if _lowest_replicas(e) == 0:
            latency = (e.get("slo") or {}).get("latency_seconds")
            yield Violation(SCALE_TO_ZERO, f"serving.{name}", f"endpoint `{name}` scales to "
                            f"zero, but its SLO promises answers within {_shown(latency)}s: "
                            "the first request after idle waits for a cold start")


def _images(_old: IR | None, new: IR) -> Iterator[Violation]:
    refs = {f"images.{n.replace('custom/', 'custom.')}": i
            for n, i in _d(new, "images").items()}
    refs.update({f"serving.{n}.image": e.get("image") or {} for n, e in _serving(new)})
    seen: set[str] = set()
    for subject, image in sorted(refs.items()):
        ref = str(image.get("ref"))
        if image.get("digest") is None and ref not in seen:
            seen.add(ref)
            yield Violation(IMAGE_BY_TAG, subject, f"image `{ref}` is not pinned by digest: "
                            "the tag can move to another image after review")


def _gpus(_old: IR | None, new: IR) -> Iterator[Violation]:
    platform = new.get("platform") or {}
    cap, types = platform.get("max_gpus_per_replica"), platform.get("gpu_types")
    hardware = _d(new, "hardware")
    users = [(f"serving.{n}", e.get("hardware")) for n, e in _serving(new)]
    users += [(f"pipelines.{p}.{s.get('name')}", s.get("hardware"))
              for p, pipe in sorted(_d(new, "pipelines").items())
              for s in pipe.get("steps") or [] if isinstance(s, dict)]
    for subject, profile in users:
        h = hardware.get(str(profile)) or {}
        count, kind = int(h.get("gpu_count") or 0), h.get("gpu_type")
        if not count:
            continue
        if cap is not None and count > cap:
            yield Violation(GPU_OVER_CAP, subject, f"{subject} asks for {count} GPUs per "
                            f"replica (hardware `{profile}`); this environment allows {cap}")
        if types is not None and kind not in types:
            allowed = ", ".join(f"`{t}`" for t in types) or "none"
            yield Violation(GPU_OVER_CAP, subject, f"{subject} runs on GPU type `{kind}` "
                            f"(hardware `{profile}`); this environment allows {allowed}")


def _training(_old: IR | None, new: IR) -> Iterator[Violation]:
    bound = int((new.get("platform") or {}).get("min_training_interval_seconds") or 0)
    for name, p in sorted(_d(new, "pipelines").items()):
        schedule = p.get("schedule")
        if p.get("kind") != "training" or not schedule:
            continue
        gap = frequency(str(schedule)).shortest_gap_seconds
        if gap < bound:
            subject = f"models.{p.get('model')}" if p.get("model") else f"pipelines.{name}"
            yield Violation(TRAINING_TOO_OFTEN, subject, f"training pipeline `{name}` runs "
                            f"every {_interval(gap)} (`{schedule}`); this environment allows "
                            f"one run per {_interval(bound)} at most")


def _interval(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
