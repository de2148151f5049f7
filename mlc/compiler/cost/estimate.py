"""Monthly cost of one environment from its resolved project, at list prices.

Serving: each endpoint's replica (CPU, memory and GPU requests, spot discounted) x 730 hours,
at the low and the high end of its autoscaling range. Scheduled pipelines: runs per month
from the cron x the hours of each step (a training step runs `training.expectedDuration`,
any other step `platform.cost.jobDuration`) x its nodes. Kafka ingestion: its replicas x 730
hours. Requests, not limits: requests are
what a node is reserved for, and what OpenCost allocates by.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...schema.types import quantity_value
from ..cron import frequency

HOURS_PER_MONTH = 730  # 365 days x 24 hours / 12
GIB = 2 ** 30
MIG_SLICES = 7  # an A100 or H100 splits into seven compute slices
CATEGORIES = {"training": "training", "drift": "drift checks",
              "batch_scoring": "batch scoring", "materialization": "materialization",
              "ab_verdict": "A/B verdicts", "model_quality": "model-quality monitors"}


@dataclass(frozen=True)
class Line:
    category: str  # serving, training, ..., materialization, ingestion
    subject: str  # serving.<endpoint>, pipelines.<pipeline> or sources.<kafka source>
    low: float  # USD per month
    high: float


@dataclass
class Estimate:
    lines: list[Line] = field(default_factory=list)
    # Endpoint -> USD per 1,000 predictions, one replica at its autoscaling target (rps only).
    per_thousand: dict[str, float | None] = field(default_factory=dict)
    unpriced: list[str] = field(default_factory=list)  # GPU types without a price

    @property
    def low(self) -> float:
        return sum(line.low for line in self.lines)

    @property
    def high(self) -> float:
        return sum(line.high for line in self.lines)


IR = Mapping[str, Any]


def estimate(ir: IR, prices: Mapping[str, Any] | None = None) -> Estimate:
    """`prices`: the price list (ir.CostSettings as JSON); None: the project's own."""
    if prices is None:
        prices = (ir.get("platform") or {}).get("cost") or {}
    out = Estimate()
    hourly = {name: _hourly(h, prices, out) for name, h in sorted(_d(ir, "hardware").items())}
    for name, e in sorted(_d(ir, "endpoints").items()):
        if e.get("mode") == "batch":
            continue  # its scoring pipeline is priced below
        rate = hourly.get(str(e.get("hardware")), 0.0)
        stream = e.get("stream")
        if isinstance(stream, dict):  # a consumer, always on: its fixed or KEDA range
            keda = stream.get("keda") or {}
            low = int(keda.get("min_replicas", stream.get("replicas") or 1))
            high = int(keda.get("max_replicas", low))
            out.lines.append(Line("stream scoring", f"serving.{name}",
                                  rate * low * HOURS_PER_MONTH, rate * high * HOURS_PER_MONTH))
            out.per_thousand[name] = None
            continue
        auto = e.get("autoscaling") or {}
        fixed = e.get("replicas")
        low = int(fixed if fixed is not None else auto.get("min_replicas") or 0)
        high = int(fixed if fixed is not None else auto.get("max_replicas") or low)
        out.lines.append(Line("serving", f"serving.{name}", rate * low * HOURS_PER_MONTH,
                              rate * high * HOURS_PER_MONTH))
        target = auto.get("target")
        out.per_thousand[name] = (rate / (float(target) * 3600) * 1000
                                  if auto.get("metric") == "rps" and target else None)
    models = _d(ir, "models")
    job = float(prices.get("job_duration_seconds") or 0) / 3600
    for name, p in sorted(_d(ir, "pipelines").items()):
        schedule = p.get("schedule")
        if not schedule or p.get("kind") not in CATEGORIES:
            continue
        training = (models.get(str(p.get("model"))) or {}).get("training") or {}
        per_run = 0.0
        for step in p.get("steps") or []:
            hours = (float(training.get("expected_duration_seconds") or 0) / 3600
                     if step.get("kind") == "train" else job)
            if step.get("kind") == "search":  # one training's length per trial
                trials = int((training.get("search") or {}).get("trials") or 1)
                hours = float(training.get("expected_duration_seconds") or 0) / 3600 * trials
            per_run += hourly.get(str(step.get("hardware")), 0.0) * int(step.get("nodes") or 1) \
                * hours
        monthly = per_run * frequency(str(schedule)).runs_per_year / 12
        out.lines.append(Line(CATEGORIES[p["kind"]], f"pipelines.{name}", monthly, monthly))
    for name, i in sorted(_d(ir, "ingestions").items()):  # always on, at fixed replicas
        monthly = (hourly.get(str(i.get("hardware")), 0.0) * int(i.get("replicas") or 1)
                   * HOURS_PER_MONTH)
        out.lines.append(Line("ingestion", f"sources.{name}", monthly, monthly))
    out.unpriced = sorted(set(out.unpriced))
    return out


def _hourly(h: Mapping[str, Any], prices: Mapping[str, Any], out: Estimate) -> float:
    requests = h.get("requests") or {}
    cpu = quantity_value(str(requests.get("cpu", "0")))
    memory = quantity_value(str(requests.get("memory", "0"))) / GIB
    rate = cpu * float(prices.get("cpu_core_hour") or 0) + memory * float(
        prices.get("memory_gib_hour") or 0)
    count = int(h.get("gpu_count") or 0)
    if count:
        kind = str(h.get("gpu_type"))
        price = (prices.get("gpu_hour") or {}).get(kind)
        if price is None:
            out.unpriced.append(kind)
            price = 0.0
        mig = re.fullmatch(r"nvidia\.com/mig-(\d)g\..*", str(h.get("gpu_resource") or ""))
        share = int(mig.group(1)) / MIG_SLICES if mig else 1.0
        rate += count * float(price) * share
    if h.get("spot"):
        rate *= 1 - float(prices.get("spot_discount") or 0)
    return rate


def _d(ir: IR, key: str) -> dict[str, dict]:
    value = ir.get(key)
    return {k: v for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) \
        else {}
