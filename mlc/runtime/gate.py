"""`python -m mlc.runtime gate`: a rollout's gates, measured against Prometheus.

Where Argo Rollouts cannot run a gate (Knative and KServe canaries), the delivery workflow runs
this instead, with the gate file that the compiler writes (key `gates.json` of the endpoint's
ConfigMap): the very queries of the endpoint's AnalysisTemplate and their limits. The verdict
follows Argo Rollouts' rules for a Prometheus metric:

- a measurement succeeds when the query returns at least one sample, the first is a number
  (not NaN) and it is at most the gate's limit (`max`; or at least it, for a gate with a
  `min`, such as a shadow's agreement); it fails when that number is on the other side;
  anything else (no sample: no traffic yet, a 0/0) is inconclusive;
- a query that cannot be run (Prometheus unreachable, a 4xx/5xx) is an error;
- a gate fails once it has more failures than `failureLimit`, more inconclusive measurements
  than `inconclusiveLimit`, or more errors in a row than `consecutiveErrorLimit`; and, stricter
  than Argo Rollouts, a gate without a single successful measurement has not passed.

Measurements start after `initialDelaySeconds` and repeat every `intervalSeconds` for the
step's pause (`--duration`), at least once. The exit code tells the workflow what to do:
0 every gate passed, 1 a gate failed (roll back), 3 inconclusive (roll back too: no evidence
that the new version is sound is not a reason to send it more traffic), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
QUERY_TIMEOUT_SECONDS = 10
# what the placeholders may be replaced with: Knative revision names and pod template hashes
_REVISION = re.compile(r"[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?")


@dataclass
class Tally:
    successes: int = 0
    failures: int = 0
    inconclusive: int = 0
    errors_in_a_row: int = 0


def value_of(body: dict[str, Any]) -> float | None:
    """`result[0]` of a Prometheus query answer as Argo Rollouts reads it; None: no sample."""
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        return float(result[1])
    if not result:
        return None
    sample = result[0]
    if "value" not in sample:  # a matrix: the first series' last point
        return float(sample["values"][-1][1])
    return float(sample["value"][1])


def verdict(value: float | None, limit: float, minimum: bool = False) -> str:
    if value is None or math.isnan(value):
        return "inconclusive"
    return "success" if (value >= limit if minimum else value <= limit) else "failure"


def bound_of(gate: dict[str, Any]) -> tuple[float, bool]:
    """(limit, whether it is a minimum) of one gate of the file."""
    if ("min" in gate) == ("max" in gate):
        raise ValueError(f"gate {gate.get('name')!r} needs one of `min` and `max`")
    return (float(gate["min"]), True) if "min" in gate else (float(gate["max"]), False)


def query(prometheus: str, promql: str) -> dict[str, Any]:
    url = prometheus.rstrip("/") + "/api/v1/query"
    data = urllib.parse.urlencode({"query": promql}).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT_SECONDS) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus answered {body.get('errorType')}: {body.get('error')}")
    return body


def promql_string_content(value: str) -> str:
    """`value` as the inside of a double-quoted PromQL string (the placeholders sit in one)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def substitute(promql: str, placeholders: dict[str, str], values: dict[str, str]) -> str:
    for key, placeholder in sorted(placeholders.items()):
        promql = promql.replace(placeholder, promql_string_content(values[key]))
    return promql


def measure_all(config: dict[str, Any], values: dict[str, str], duration: int, *,
                sleep: Callable[[float], None] = time.sleep,
                run_query: Callable[[str, str], dict[str, Any]] = query,
                log: Callable[[str], None] = print) -> int:
    interval = max(1, int(config["intervalSeconds"]))
    count = max(1, duration // interval)
    gates = [(g["name"], substitute(g["query"], config["placeholders"], values), *bound_of(g))
             for g in config["gates"]]
    tallies = {name: Tally() for name, *_ in gates}
    sleep(config["initialDelaySeconds"])
    for i in range(count):
        for name, promql, limit, minimum in gates:
            t = tallies[name]
            try:
                value = value_of(run_query(config["prometheus"], promql))
            except (OSError, RuntimeError, ValueError, KeyError, IndexError) as exc:
                t.errors_in_a_row += 1
                log(f"{name}: error: {exc}")
                if t.errors_in_a_row > config["consecutiveErrorLimit"]:
                    log(f"{name}: FAILED: {t.errors_in_a_row} errors in a row")
                    return EXIT_FAILED
                continue
            t.errors_in_a_row = 0
            outcome = verdict(value, limit, minimum)
            t.successes += outcome == "success"
            t.failures += outcome == "failure"
            t.inconclusive += outcome == "inconclusive"
            log(f"{name}: {value} ({'min' if minimum else 'max'} {limit}): {outcome}")
            if t.failures > config["failureLimit"]:
                log(f"{name}: FAILED: {t.failures} failed measurements")
                return EXIT_FAILED
            if t.inconclusive > config["inconclusiveLimit"]:
                log(f"{name}: INCONCLUSIVE: {t.inconclusive} measurements without data")
                return EXIT_INCONCLUSIVE
        if i < count - 1:
            sleep(interval)
    unmeasured = sorted(name for name, t in tallies.items() if not t.successes)
    if unmeasured:
        # stricter than Argo Rollouts: a gate that never saw data has not passed
        log(f"INCONCLUSIVE: no successful measurement of {', '.join(unmeasured)}")
        return EXIT_INCONCLUSIVE
    log("every gate passed")
    return EXIT_PASSED


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlc.runtime gate")
    parser.add_argument("--gates", required=True, help="the gate file (gates.json)")
    parser.add_argument("--new", required=True, help="the new revision (or pod template hash)")
    parser.add_argument("--stable", required=True, help="the revision that serves today")
    parser.add_argument("--duration", type=int, required=True,
                        help="seconds to keep measuring (the step's pause)")
    args = parser.parse_args(argv)
    for name in (args.new, args.stable):
        if not _REVISION.fullmatch(name):
            print(f"error: {name!r} is not a revision name", file=sys.stderr)
            return EXIT_USAGE
    with open(args.gates, encoding="utf-8") as f:
        config = json.load(f)
    return measure_all(config, {"new": args.new, "stable": args.stable}, args.duration)
