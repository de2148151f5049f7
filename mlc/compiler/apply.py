"""`mlc apply`: write every environment's new tree, or exactly a saved plan.

Order matters, and all of it runs under one lock on the output folder, so that two applies
never interleave (not even one environment at a time):

1. read every environment's tree and plan against it (or, for a saved plan, check that
   neither the project nor any tree changed since the plan: a stale plan is refused);
2. refuse, before writing anything, when a risk stands that needs a flag (`--allow-delete`
   for deleting state or a feature view in use) or when `write` would refuse an environment
   (a hand-edited generated file without `--force`, someone else's file in the way);
3. write every environment as one transaction (write.write_environments), each changed
   environment's audit record (who, which commit, the plan's hash, the accepted risks) in
   the same transaction (audit/).

A process killed during step 3 leaves every environment folder whole, and the next mlc run
(plan or apply, under the same lock) finds every old tree or every new one: the swaps are
journaled, and a killed transaction is finished before anything is read.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .audit.record import audit_records
from .diagnostics import Diagnostics
from .out_dir import check_out_dir
from .plan import saved as saved_plans
from .plan.risks import HAND_EDITED, NOT_GENERATED
from .policy import POLICY_CODES
from .write import check_write, output_lock, report_os_error, write_environments

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
STALE_PLAN = "MLC911"
BAD_PLAN_FILE = "MLC912"
RISK_REFUSED = "MLC913"


@dataclass(frozen=True)
class Target:
    """One environment to write: its files, and the risks its plan found (as JSON)."""

    env: str
    files: Mapping[str, bytes]
    risks: Sequence[Mapping]
    location: str


def run_apply(root: Path, envs: list[str] | None, out_dir: Path, *, force: bool = False,
              allow_delete: bool = False, color: bool = False, diags: Diagnostics,
              stdout: IO[str] | None = None) -> int:
    from .pipeline import compile_project
    from .plan.build import environments_to_read
    from .plan.risks import secret_facts

    stdout = stdout or sys.stdout
    # before the lock: compiling is the slow part; the secret check's facts are read from the
    # objects as they are rendered, as the plan does, instead of parsing the files back
    compiled = compile_project(root, envs, diags, facts=secret_facts)
    to_read = environments_to_read([c.env for c in compiled], compiled[0].project.environments)
    try:
        return _apply_compiled(root, compiled, to_read, out_dir, force=force,
                               allow_delete=allow_delete, color=color, diags=diags,
                               stdout=stdout)
    except OSError as exc:  # taking the lock, or finishing an interrupted write
        report_os_error(exc, Path(out_dir), diags)
        return EXIT_INVALID


def _apply_compiled(root, compiled, to_read, out_dir, *, force, allow_delete, color, diags,
                    stdout) -> int:
    from .plan.build import build_plan, read_trees
    from .plan.command import report_tree_error
    from .plan.formats import render_text
    from .plan.trees import TreeError

    with output_lock(out_dir):
        try:
            trees = read_trees(out_dir, to_read, shown_out=str(out_dir))
        except TreeError as exc:
            report_tree_error(exc, diags)
            return EXIT_INVALID
        plan = build_plan(root, compiled, trees, {"type": "directory", "path": str(out_dir)})
        stdout.write(render_text(plan, color=color))
        targets = [Target(e.env, e.files, [r.to_json() for r in e.risks], e.location)
                   for e in plan.environments]
        return _write_all(out_dir, targets, force=force, allow_delete=allow_delete,
                          diags=diags, stdout=stdout,
                          audit=(root, plan.to_json(), None))


def apply_saved(root: Path, plan_file: Path, *, force: bool = False,
                allow_delete: bool = False, diags: Diagnostics,
                stdout: IO[str] | None = None) -> int:
    stdout = stdout or sys.stdout
    try:
        plan = saved_plans.load(plan_file)
    except saved_plans.BadPlanFile as exc:
        diags.error(BAD_PLAN_FILE, str(exc), help="make a new one with `mlc plan --save PLAN`")
        return EXIT_INVALID
    changed = saved_plans.stale_sources(plan, root)
    if changed:
        diags.error(STALE_PLAN, f"the plan {plan_file} is stale: {', '.join(changed)} changed "
                    "since it was made", help="run `mlc plan --save PLAN` again, review it, "
                    "and apply the new plan")
        return EXIT_INVALID
    out_dir = plan.out_dir(root)
    if not check_out_dir(root, out_dir, diags):
        return EXIT_INVALID
    try:
        return _apply_plan(root, plan, plan_file, out_dir, force=force,
                           allow_delete=allow_delete, diags=diags, stdout=stdout)
    except OSError as exc:  # taking the lock, or finishing an interrupted write
        report_os_error(exc, Path(out_dir), diags)
        return EXIT_INVALID


def _apply_plan(root: Path, plan, plan_file: Path, out_dir: Path, *, force: bool,
                allow_delete: bool, diags: Diagnostics, stdout: IO[str]) -> int:
    from .plan.command import report_tree_error
    from .plan.trees import TreeError, read_disk_tree

    envs_json = {e["name"]: e for e in plan.plan.get("environments", [])}
    with output_lock(out_dir):
        targets = []
        for env in plan.environments:
            location = f"{out_dir}/{env}"
            try:
                tree = read_disk_tree(out_dir, env, location)
            except TreeError as exc:
                report_tree_error(exc, diags)
                return EXIT_INVALID
            moved = saved_plans.stale_tree(plan, env, tree)
            if moved:
                shown = ", ".join(moved[:5]) + (f" and {len(moved) - 5} more"
                                                if len(moved) > 5 else "")
                diags.error(STALE_PLAN, f"the plan {plan_file} is stale: {location} changed "
                            f"since it was made ({shown})", help="run `mlc plan --save PLAN` "
                            "again, review it, and apply the new plan")
            targets.append(Target(env, plan.files[env],
                                  envs_json.get(env, {}).get("risks", []), location))
        if diags.has_errors():
            return EXIT_INVALID
        for env in plan.environments:
            stdout.write(f"{env}: {envs_json.get(env, {}).get('summary_text', '')}\n")
        return _write_all(out_dir, targets, force=force, allow_delete=allow_delete,
                          diags=diags, stdout=stdout,
                          audit=(root, plan.plan, Path(plan_file).name))


def _write_all(out_dir: Path, targets: list[Target], *, force: bool, allow_delete: bool,
               diags: Diagnostics, stdout: IO[str],
               audit: tuple[Path, Mapping, str | None]) -> int:
    """Check every environment, then write them all; nothing is written if any is refused.
    `audit`: the project folder, the plan as JSON and the saved plan's name, for the records."""
    granted = {"--allow-delete": allow_delete, "--force": force}
    for t in targets:
        for risk in t.risks:
            # write's own check refuses hand edits and foreign files, with its own codes.
            if risk.get("code") in (HAND_EDITED, NOT_GENERATED) or not risk.get("blocks_apply"):
                continue
            flag = risk.get("override")
            if flag and granted.get(flag):
                continue
            message = f"{t.env}: {risk.get('message')}"
            if risk.get("code") in POLICY_CODES:
                message = f"{t.env}: [{risk.get('code')}] {risk.get('message')}"
                help = (f"fix it, or accept it on purpose: `acceptedRisks: [{{code: "
                        f"{risk.get('code')}, subject: {risk.get('subject')}, reason: ...}}]` "
                        "in the environment's overlay (docs/policies.md)")
            else:
                help = f"review it; pass {flag} to apply it anyway" if flag else None
            diags.error(RISK_REFUSED, message, help=help)
    for t in targets:
        check_write(out_dir, t.env, t.files, force=force, diags=diags)
    records = audit_records(out_dir, [t.env for t in targets], *audit, diags=diags)
    if diags.has_errors():
        print("Nothing was applied.", file=sys.stderr)
        return EXIT_INVALID
    results = write_environments(out_dir, {t.env: t.files for t in targets}, force=force,
                                 diags=diags, records=records)
    if results is None:  # an OS error: reported, and no environment was changed
        print("Nothing was applied.", file=sys.stderr)
        return EXIT_INVALID
    for t, result in zip(targets, results, strict=True):
        stdout.write(f"{t.env}: applied to {t.location} ({len(result.written)} written, "
                     f"{len(result.removed)} removed, {len(result.unchanged)} unchanged)\n")
    return EXIT_OK
