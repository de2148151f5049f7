"""`python -m mlc.runtime ab-guard`: one run of an A/B endpoint's guardrails.

The guard CronWorkflow (backends/serving/ab_guard.py) runs this every gate interval with the
guard file (key `ab-guard.json` of the endpoint's ConfigMap) and the override the last run
left (the ConfigMap `<endpoint>-ab-guard`, `override.json`). It measures each guarded
variant's gates once, prints the new override on stdout (one line of JSON, which the
workflow's next step writes back into that ConfigMap) and pushes mlc_ab_guard_* gauges.

Each measurement is decided as the delivery gate decides it (mlc/runtime/gate.py, Argo
Rollouts' rules): at most the limit succeeds, over it fails, no sample or NaN is
inconclusive. Then, per variant and run:

- a run in which a gate failed adds one to the variant's failed runs; more than
  `failureLimit` failed runs in a row stop it: the override names it, with the model it
  served, and the routers send it no more requests;
- a run in which every gate succeeded sets the count back to 0;
- an inconclusive run (no traffic to measure) changes nothing, and never stops a variant:
  the guard takes traffic away on evidence of harm, and a variant that receives no
  requests harms no one. (A variant that is down is not inconclusive: the router answers
  its clients 502, which the error ratio counts.)
- a query that cannot be run (Prometheus unreachable) changes nothing either; the run
  reports `mlc_ab_guard_up 0`.

A stopped variant stays stopped until ml.yaml serves another model on it (the stop names the
model, and is dropped once the guard file names another) or a person clears the override.
The baseline is not in the guard file: it is never measured, never stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlc import metrics as contract

from . import pushgateway
from .gate import bound_of, query, substitute, value_of, verdict

PUSH_JOB = "mlc-ab-guard"
EXIT_DONE, EXIT_USAGE = 0, 2
TEXTFILE = Path("/tmp/mlc-ab-guard.prom")  # where the gauges go without a Pushgateway


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def read_state(text: str) -> dict[str, Any]:
    """The last run's override; anything unreadable starts afresh (and says so)."""
    try:
        doc = json.loads(text) if text.strip() else {}
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("stopped", {}), dict) \
            or not isinstance(doc.get("failedRuns", {}), dict):
        _log("the last override is unreadable: starting with no variant stopped")
        return {"stopped": {}, "failedRuns": {}}
    return {"stopped": dict(doc.get("stopped", {})), "failedRuns": dict(doc.get("failedRuns", {}))}


def override_text(state: dict[str, Any]) -> str:
    """One line of JSON that can sit in a single-quoted YAML scalar of the workflow's patch."""
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.replace("'", "\\u0027")


def run(config: dict[str, Any], state: dict[str, Any], *,
        run_query: Callable[[str, str], dict[str, Any]] = query,
        log: Callable[[str], None] = _log) -> tuple[dict[str, Any], list, bool]:
    """(the new override, the gauges to export, whether every query could be run)."""
    models: dict[str, str] = config["variants"]
    stopped = {v: e for v, e in state["stopped"].items()
               if v in models and isinstance(e, dict) and e.get("model") == models[v]}
    for v in sorted(set(state["stopped"]) - set(stopped)):
        log(f"{v}: the stop no longer applies (another model, or no longer guarded)")
    failed = {v: int(n) for v, n in state["failedRuns"].items()
              if v in models and v not in stopped and isinstance(n, int)}
    gates = [(g["name"], g["query"], *bound_of(g)) for g in config["gates"]]
    values: list[pushgateway.Value] = []
    up = True
    for v in sorted(models):
        if v in stopped:
            status = "stopped"
        else:
            outcomes, first_failure = [], None
            for name, promql, limit, minimum in gates:
                text = substitute(promql, config["placeholders"], {"variant": v})
                try:
                    value = value_of(run_query(config["prometheus"], text))
                except (OSError, RuntimeError, ValueError, KeyError, IndexError) as exc:
                    log(f"{v} {name}: error: {exc}")
                    outcomes.append("error")
                    up = False
                    continue
                outcome = verdict(value, limit, minimum)
                log(f"{v} {name}: {value} ({'min' if minimum else 'max'} {limit}): {outcome}")
                outcomes.append(outcome)
                values.append((contract.AB_GUARD_VALUE,
                               math.nan if value is None else value, {"variant": v, "gate": name}))
                if outcome == "failure" and first_failure is None:
                    first_failure = (name, value)
            if first_failure is not None:
                failed[v] = failed.get(v, 0) + 1
                status = "failing"
                if failed[v] > config["failureLimit"]:
                    gate, value = first_failure
                    stopped[v] = {"model": models[v], "gate": gate, "value": value}
                    failed.pop(v)
                    status = "stopped"
                    log(f"{v}: STOPPED: {gate} failed in {config['failureLimit'] + 1} runs in a "
                        "row; the routers send it no more requests")
            elif outcomes and all(o == "success" for o in outcomes):
                failed.pop(v, None)
                status = "ok"
            else:
                status = "inconclusive"
        values += [(contract.AB_GUARD_STATE, int(status == s), {"variant": v, "state": s})
                   for s in contract.AB_GUARD_STATES]
        values.append((contract.AB_GUARD_FAILURES, failed.get(v, 0), {"variant": v}))
        log(f"{v}: {status}")
    new = {"stopped": dict(sorted(stopped.items())),
           "failedRuns": dict(sorted((v, n) for v, n in failed.items() if n))}
    return new, values, up


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlc.runtime ab-guard")
    parser.add_argument("--gates", required=True, help="the guard file (ab-guard.json)")
    parser.add_argument("--state", default="",
                        help="the override the last run wrote (JSON; empty: none)")
    args = parser.parse_args(argv)
    try:
        with open(args.gates, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        _log(f"error: cannot read the guard file: {exc}")
        return EXIT_USAGE
    started = time.time()
    new, values, up = run(config, read_state(args.state))
    values += [(contract.AB_GUARD_LAST_RUN, started, {}), (contract.AB_GUARD_UP, int(up), {})]
    try:
        pushgateway.export(values, job=PUSH_JOB, grouping={"endpoint": config["endpoint"]},
                           textfile=TEXTFILE, replace=True)
    except OSError as exc:  # the override still goes out: the routers need it more
        _log(f"error: the guard's metrics could not be pushed: {exc}")
    print(override_text(new))
    return EXIT_DONE
