"""`mlc appset DIR`: one Argo CD ApplicationSet over every project in a folder.

DIR holds projects, one per sub-folder with an ml.yaml (`DIR/fraud/ml.yaml`,
`DIR/churn/ml.yaml`). Every environment of every project is checked (load, validate,
resolve: what `mlc validate` does), and contributes one element to the ApplicationSet's list
generator: the folder of its Application in git (`platform.argocd`), so that applying the one
ApplicationSet deploys them all (backends/argocd.py says why bootstrap Applications). A
project with errors stops the command: an ApplicationSet must not silently leave one out.
"""

from __future__ import annotations

import os
from pathlib import Path

from .diagnostics import Diagnostics, Span
from .names import is_dns_label
from .pipeline import PROJECT_FILE, check_environment, list_environments

NO_PROJECTS = "MLC525"
NAME_CLASH = "MLC526"
BAD_FLAG = "MLC527"


def projects_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".")
                  and os.path.lexists(p / PROJECT_FILE))


def application_set_text(folder: Path, *, name: str, namespace: str, argocd_project: str,
                         diags: Diagnostics) -> bytes | None:
    from .backends.argocd import application_set, bootstrap_element
    from .render import dump_yaml, header

    for flag, value in (("--name", name), ("--namespace", namespace),
                        ("--project", argocd_project)):
        if not is_dns_label(value):
            diags.error(BAD_FLAG, f"{flag} `{value}` is not a valid Kubernetes name",
                        help="use lowercase letters, digits and `-`, at most 63 characters")
    if diags.has_errors():
        return None
    projects = projects_in(folder)
    if not projects:
        diags.error(NO_PROJECTS, f"no projects in {folder}: mlc appset reads every "
                    f"sub-folder that holds an {PROJECT_FILE}", span=Span(str(folder)),
                    help="point it at the folder above the projects, e.g. `mlc appset "
                    "projects/` for projects/fraud/ml.yaml")
        return None
    elements, owners = [], {}
    for root in projects:
        for env in list_environments(root):
            project = check_environment(root, env, diags)
            if project is None:
                continue
            element = bootstrap_element(project, argocd_project)
            where = f"{root.name} ({env})"
            # two Applications of one name overwrite each other; two of one folder of one
            # repository would both sync the same Application
            keys = {("name", element["name"]): f"become `{element['name']}`",
                    ("path", element["repoURL"], element["path"]):
                        f"sync `{element['path']}` of {element['repoURL']}"}
            clashes = [(owners[k], what) for k, what in keys.items() if k in owners]
            for other, what in clashes:
                diags.error(NAME_CLASH, f"{where} and {other} both {what}",
                            span=Span(str(root / PROJECT_FILE)),
                            help="give the projects distinct `metadata.name`s, or distinct "
                            "`platform.argocd.path`s in a shared repository")
            if not clashes:
                owners.update(dict.fromkeys(keys, where))
                elements.append(element)
    if diags.has_errors():
        return None
    # not render.header's "run mlc apply": this file is remade by `mlc appset`
    head = header(f"{', '.join(p.name for p in projects)}").replace(
        "change the source and run mlc apply", "add or change a project and run mlc appset "
        "again")
    return (f"# {head}\n" + dump_yaml(application_set(name, namespace, elements))).encode()
