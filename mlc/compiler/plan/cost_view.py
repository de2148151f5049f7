"""The cost section of the text and markdown plans (the JSON plan carries it as data).

Subjects are ml.yaml paths of names the schema limits to DNS-like characters, so they need
no escaping in markdown code spans.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEADING = "Cost per month (USD at list prices; min - max over the autoscaling range)"


def money(low: float, high: float) -> str:
    return f"{low:,.2f}" if low == high else f"{low:,.2f} - {high:,.2f}"


def delta(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "change unknown"
    return f"{low:+,.2f}" if low == high else f"{low:+,.2f} - {high:+,.2f}"


def text_lines(cost: Mapping[str, Any] | None) -> list[str]:
    if not cost:
        return []
    total = cost["total"]
    rows = [(line["category"], line["subject"], money(line["monthly_min"], line["monthly_max"]),
             delta(line["delta_min"], line["delta_max"])) for line in cost["lines"]]
    rows.append(("total", "", money(total["monthly_min"], total["monthly_max"]),
                 delta(total["delta_min"], total["delta_max"])))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    out = ["", f"  {HEADING}:"]
    for row in rows:
        out.append("    " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
                   + f"  ({row[3]})")
    out += _extras(cost, code=lambda s: s)
    return [line.rstrip() for line in out]


def markdown_summary(envs: list[tuple[str, Mapping[str, Any] | None]]) -> list[str]:
    """The table a pull request comment leads with."""
    priced = [(name, cost) for name, cost in envs if cost]
    if not priced:
        return []
    out = ["| Environment | Cost per month (USD) | This change | Budget |",
           "| --- | ---: | ---: | ---: |"]
    for name, cost in priced:
        t = cost["total"]
        budget = f"{cost['budget']:,.2f}" if cost.get("budget") is not None else "none"
        out.append(f"| {name} | {money(t['monthly_min'], t['monthly_max'])} | "
                   f"**{delta(t['delta_min'], t['delta_max'])}** | {budget} |")
    return [*out, ""]


def markdown_lines(cost: Mapping[str, Any] | None) -> list[str]:
    if not cost or not cost["lines"]:
        return []
    out = [f"**{HEADING}**", "", "| What | | Per month | Change |", "| --- | --- | ---: | ---: |"]
    for line in cost["lines"]:
        out.append(f"| {line['category']} | `{line['subject']}` | "
                   f"{money(line['monthly_min'], line['monthly_max'])} | "
                   f"{delta(line['delta_min'], line['delta_max'])} |")
    out.append("")
    extras = _extras(cost, code=lambda s: f"`{s}`")
    return out + [line.strip() for line in extras] + ([""] if extras else [])


def _extras(cost: Mapping[str, Any], code) -> list[str]:
    out = []
    per = [f"{code(name)} {value:.6f}" for name, value in cost["per_thousand_predictions"].items()
           if value is not None]
    if per:
        out.append("    per 1,000 predictions at the autoscaling target: " + ", ".join(per))
    if cost["unpriced_gpu_types"]:
        out.append("    no price for GPU type " + ", ".join(code(t) for t in
                   cost["unpriced_gpu_types"]) + ", counted as 0: set "
                   "platform.cost.prices.gpuHour")
    return out
