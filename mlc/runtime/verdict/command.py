"""`python -m mlc.runtime verdict --project project.json --endpoint E`: an endpoint's verdict.

The same step its CronWorkflow runs (`step --pipeline verdict-<E> --step verdict`), found by
the endpoint's name, for a run by hand on this machine (docs/shadow-and-ab.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlc.runtime import step


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlc.runtime verdict",
                                     description="Run the A/B verdict of an endpoint.")
    parser.add_argument("--project", required=True, type=Path, help="project.json (the IR)")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="e.g. window_seconds=86400")
    args = parser.parse_args(argv)
    try:
        project = step.load_project(args.project)
    except step.StepFailed as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return step.EXIT_FAILED
    endpoint = project.endpoints.get(args.endpoint)
    if endpoint is None or endpoint.rollout.verdict is None:
        with_verdict = sorted(n for n, e in project.endpoints.items() if e.rollout.verdict)
        print(f"error: endpoint `{args.endpoint}` has no A/B verdict in project "
              f"`{project.name}` (endpoints with one: {', '.join(with_verdict) or 'none'})",
              file=sys.stderr)
        return step.EXIT_FAILED
    params = [a for p in args.param for a in ("-p", p)]
    return step.main(["--project", str(args.project), "--pipeline",
                      endpoint.rollout.verdict.pipeline, "--step", "verdict", *params])
