"""`mlc promote ENV --from-verdict verdict.json`: end an A/B test with the winner.

The verdict (mlc/runtime/verdict/step.py writes it) names the winning variant and the one
registry version it served. Promoting it edits `environments/ENV.yaml`, as `mlc promote`
does (comments and layout kept): the endpoint serves that version (`serving.<e>.version`,
an alias pin removed) and its rollout goes back to `strategy: rolling`, one arm, which
ignores the variants and the verdict of the base file; the losing arms, the router and the
verdict's CronWorkflow leave the tree at the next apply. Pinning the version, not the
variant's alias, serves exactly what was measured, even if a retrain has moved the alias
since.

Refused, with nothing written: a verdict that is not a winner (no difference, not enough
data, a failed run), one for another project, environment or endpoint, an endpoint that is
no longer an A/B test, and a winner that served more than one version in the window.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import IO

from .diagnostics import Diagnostics
from .overlay_edit import check_not_linked, read_overlay
from .pipeline import ENVIRONMENTS_DIR, check_environment
from .promote import (
    EXIT_INVALID,
    EXIT_OK,
    compile_with_overlay,
    edit_overlay,
    load_plain,
    mapping_at,
    round_trip,
    show_and_write,
)

VERDICT_REFUSED = "MLC364"
KIND = "ABVerdict"  # mlc/runtime/verdict/step.py's KIND (the compiler never imports it)


class Refused(Exception):
    def __init__(self, message: str, help: str):
        super().__init__(message)
        self.message, self.help = message, help


def promote_verdict(root: Path, env: str, verdict_file: Path, diags: Diagnostics, *,
                    dry_run: bool = False, stdout: IO[str] | None = None) -> int:
    stdout = stdout or sys.stdout
    name = f"{ENVIRONMENTS_DIR}/{env}.yaml"
    try:
        verdict = _read(verdict_file)
        if verdict.get("environment") != env:  # before compiling: that may fail elsewhere
            raise Refused(f"{verdict_file} was reached in environment "
                          f"`{verdict.get('environment')}`, not `{env}`",
                          f"promote it into its own environment: `mlc promote "
                          f"{verdict.get('environment')} --from-verdict {verdict_file}`")
        project = check_environment(root, env, diags)
        diags.raise_if_errors()
        endpoint, version = _winner(verdict, project, env, verdict_file)
        if not os.path.lexists(root / name):  # a FIFO or a folder is the read's error
            raise Refused(f"there is no {name} to write the winner into",
                          "promotion writes into an environment's overlay")
    except Refused as exc:
        diags.error(VERDICT_REFUSED, exc.message, help=exc.help)
        return EXIT_INVALID
    # the same bounded, link-refusing read and atomic replace as `mlc promote`
    if not check_not_linked(root, name, "mlc promote", diags):
        return EXIT_INVALID
    overlay = read_overlay(root, name, "mlc promote", diags)
    if overlay is None:
        return EXIT_INVALID
    old_text = overlay.text
    pinned = edit_overlay(old_text, [(f"serving.{endpoint}", ("version", version))],
                          load_plain(root))
    yaml, doc = round_trip(pinned)
    mapping_at(doc, ["serving", endpoint, "rollout"])["strategy"] = "rolling"
    out = io.StringIO()
    yaml.dump(doc, out)
    new_text = out.getvalue()
    compiled, problems = compile_with_overlay(root, env, new_text)
    if compiled is not None:
        e = compiled.endpoints[endpoint]
        if e.version != version or e.rollout.strategy != "rolling":
            problems = [f"serving.{endpoint} resolves to version {e.version} and strategy "
                        f"{e.rollout.strategy}, not version {version} and rolling"]
    if problems:
        diags.error(VERDICT_REFUSED, f"ending the A/B test of `{endpoint}` would not compile; "
                    f"{ENVIRONMENTS_DIR}/{env}.yaml was not changed", notes=problems,
                    help="fix the environment first, or edit the overlay by hand")
        return EXIT_INVALID
    if not show_and_write(overlay, new_text, "mlc promote", diags, dry_run=dry_run,
                          stdout=stdout):
        return EXIT_INVALID if diags.has_errors() else EXIT_OK
    stdout.write(f"Promoted the A/B winner `{verdict['winner']}` of {endpoint} in {env}: "
                 f"version {version}, strategy rolling. Review with `mlc plan`.\n")
    return EXIT_OK


def _read(path: Path) -> dict:
    try:
        verdict = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read the verdict {path}: {exc}",
                      "pass the verdict.json an A/B verdict run published") from exc
    if not isinstance(verdict, dict) or verdict.get("kind") != KIND:
        raise Refused(f"{path} is not an A/B verdict (no `kind: {KIND}`)",
                      "pass the verdict.json an A/B verdict run published")
    return verdict


def _winner(verdict: dict, project, env: str, path: Path) -> tuple[str, int]:
    """The endpoint and the version to pin, or Refused."""
    source = f"{path} (project `{verdict.get('project')}`, environment " \
             f"`{verdict.get('environment')}`, endpoint `{verdict.get('endpoint')}`)"
    if verdict.get("project") != project.name:
        raise Refused(f"{source} is a verdict of another project than `{project.name}`",
                      "pass this project's verdict")
    endpoint = verdict.get("endpoint")
    e = project.endpoints.get(endpoint)
    if e is None or e.rollout.strategy != "ab":
        raise Refused(f"{source}: endpoint `{endpoint}` is not an A/B test in {env} (any more)",
                      "nothing to end; check `mlc explain " + env + f" serving.{endpoint}`")
    if verdict.get("status") != "ok" or verdict.get("decision") != "winner":
        why = verdict.get("error") or f"its decision is `{verdict.get('decision')}`"
        raise Refused(f"{source} names no winner: {why}",
                      "wait for a run that decides `winner`, or end the test by hand")
    winner = verdict.get("winner")
    if winner not in {v.name for v in e.rollout.variants}:
        raise Refused(f"{source}: the winner `{winner}` is no longer a variant of `{endpoint}`",
                      "pass a verdict of the current variants")
    version = (verdict.get("winner_model") or {}).get("version")
    if not isinstance(version, int):
        served = (verdict.get("winner_model") or {}).get("model_versions")
        raise Refused(f"{source}: the winner `{winner}` served registry versions {served} "
                      "during the window, so the verdict does not say which one won",
                      "pin the variants' versions (`mlc pin`), let a run measure them, and "
                      "promote that verdict")
    return endpoint, version
