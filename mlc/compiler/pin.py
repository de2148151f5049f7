"""`mlc pin ENV`: replace the registry aliases ENV serves by the versions they point at now.

The serving runtime resolves an alias when a pod starts, so an endpoint on an alias serves
whatever the alias points at when each pod starts: a retrain that moves `@production` or
`@challenger` during a canary, shadow or A/B rollout changes a running arm at its next
scale-up, with both versions answering meanwhile (validate warns: MLC343). Pinning records
in git, and so in the plan, which version each arm serves:

- `serving.<e>.version` for the endpoint itself,
- `serving.<e>.rollout.shadow.version` for its shadow,
- `serving.<e>.rollout.variants[name].version` for each A/B variant (overlay lists of named
  items merge by name),
each with `alias: {$patch: delete}` where ml.yaml sets the alias (alias and version exclude
each other). Only arms that serve an alias are touched. The aliases are read from the MLflow
registry by mlc/registry.py (`--tracking-uri`, default the environment's
`platform.mlflow.trackingUri`); the
overlay is edited as `mlc promote` edits it (comments and layout kept), compiled before it
is written, and left alone if anything fails.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .diagnostics import Diagnostics
from .ir import ResolvedProject
from .overlay_edit import check_not_linked, read_overlay
from .pipeline import ENVIRONMENTS_DIR, check_environment, select_environments
from .plan.objects import dig
from .promote import (
    EXIT_INVALID,
    EXIT_OK,
    PATCH_DELETE,
    compile_with_overlay,
    load_plain,
    mapping_at,
    round_trip,
    show_and_write,
)

PIN_FAILED = "MLC344"

def aliased_arms(project: ResolvedProject) -> list[tuple[str, str, str, str]]:
    """(endpoint, arm, registered model, alias) of every arm that serves an alias.

    `arm` is "endpoint", "shadow" or "variant:<name>".
    """
    out = []
    for name in sorted(project.endpoints):
        e = project.endpoints[name]
        r = e.rollout
        if e.version is None and e.alias and r.strategy != "ab":  # A/B: the variants serve
            out.append((name, "endpoint", e.registered_name, e.alias))
        if r.strategy == "shadow" and r.shadow_version is None and r.shadow_alias:
            out.append((name, "shadow", e.registered_name, r.shadow_alias))
        if r.strategy == "ab":
            out += [(name, f"variant:{v.name}", e.registered_name, v.alias)
                    for v in r.variants if v.version is None and v.alias]
    return out


def _pin_node(node, base_node: Any, version: int) -> None:
    from ruamel.yaml.comments import CommentedMap

    node["version"] = version
    if isinstance(base_node, dict) and base_node.get("alias") is not None:
        directive = CommentedMap(PATCH_DELETE)
        directive.fa.set_flow_style()
        node["alias"] = directive
    elif "alias" in node:
        del node["alias"]


def _variant_node(doc, endpoint: str, variant: str):
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    rollout = mapping_at(doc, ["serving", endpoint, "rollout"])
    items = rollout.get("variants")
    if not isinstance(items, list):
        items = CommentedSeq()
        rollout["variants"] = items
    for item in items:
        if isinstance(item, dict) and item.get("name") == variant:
            return item
    item = CommentedMap(name=variant)
    items.append(item)
    return item


def edit_overlay(text: str, versions: dict[tuple[str, str], int], base: Any) -> str:
    yaml, doc = round_trip(text)
    from ruamel.yaml.comments import CommentedMap

    if doc is None:
        doc = CommentedMap()
    for (endpoint, arm), version in sorted(versions.items()):
        base_endpoint = dig(base, "serving", endpoint)
        if arm == "endpoint":
            _pin_node(mapping_at(doc, ["serving", endpoint]), base_endpoint, version)
        elif arm == "shadow":
            _pin_node(mapping_at(doc, ["serving", endpoint, "rollout", "shadow"]),
                      dig(base_endpoint, "rollout", "shadow"), version)
        else:
            variant = arm.split(":", 1)[1]
            base_items = dig(base_endpoint, "rollout", "variants")
            base_item = next((v for v in base_items if isinstance(v, dict)
                              and v.get("name") == variant), None) \
                if isinstance(base_items, list) else None
            _pin_node(_variant_node(doc, endpoint, variant), base_item, version)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _compiles_to(root: Path, env: str, new_text: str,
                 versions: dict[tuple[str, str], int]) -> list[str]:
    """Compile ENV with the new overlay: the problems, or []."""
    project, problems = compile_with_overlay(root, env, new_text)
    if project is None:
        return problems
    left = {(e, arm) for e, arm, _, _ in aliased_arms(project)}
    return [f"{e} ({arm}) still serves an alias" for e, arm in sorted(versions)
            if (e, arm) in left]


Resolver = Callable[[str, list[tuple[str, str, str, str]]],
                    tuple[dict[tuple[str, str], int], list[str]]]


def pin(root: Path, env: str, diags: Diagnostics, resolve: Resolver, *,
        tracking_uri: str | None = None, dry_run: bool = False,
        stdout: IO[str] | None = None) -> int:
    """`resolve(uri, arms)`: the registry's version per (endpoint, arm), and what failed;
    mlc/registry.py reads MLflow (the compiler itself never imports it)."""
    stdout = stdout or sys.stdout
    select_environments(root, [env], diags)
    name = f"{ENVIRONMENTS_DIR}/{env}.yaml"
    if not os.path.lexists(root / name):  # a FIFO or a folder is the compile's error
        diags.error(PIN_FAILED, f"there is no {name} to write the "
                    "versions into", help=f"create {name} (it may be "
                    "empty: `{}`)")
        return EXIT_INVALID
    if not check_not_linked(root, name, "mlc pin", diags):
        return EXIT_INVALID
    project = check_environment(root, env, diags)
    diags.raise_if_errors()
    assert project is not None
    arms = aliased_arms(project)
    if not arms:
        stdout.write(f"Nothing to pin: every endpoint of {env} serves a version.\n")
        return EXIT_OK
    uri = tracking_uri or project.platform.mlflow_tracking_uri
    versions, problems = resolve(uri, arms)
    if problems:
        diags.error(PIN_FAILED, f"the registry at {uri} could not resolve every alias; "
                    f"{ENVIRONMENTS_DIR}/{env}.yaml was not changed", notes=problems,
                    help="register a version under each alias first, or pass the registry "
                         "with `--tracking-uri`")
        return EXIT_INVALID
    overlay = read_overlay(root, name, "mlc pin", diags)
    if overlay is None:
        return EXIT_INVALID
    new_text = edit_overlay(overlay.text, versions, load_plain(root))
    problems = _compiles_to(root, env, new_text, versions)
    if problems:
        diags.error(PIN_FAILED, f"pinning {env} would not compile; {ENVIRONMENTS_DIR}/{env}"
                    ".yaml was not changed", notes=problems,
                    help="edit the overlay by hand")
        return EXIT_INVALID
    if not show_and_write(overlay, new_text, "mlc pin", diags, dry_run=dry_run, stdout=stdout):
        return EXIT_INVALID if diags.has_errors() else EXIT_OK
    pinned = ", ".join(f"{e} {arm} -> {v}" for (e, arm), v in sorted(versions.items()))
    stdout.write(f"Pinned {env}: {pinned}. Review with `mlc plan`.\n")
    return EXIT_OK
