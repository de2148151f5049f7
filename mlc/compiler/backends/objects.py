"""Metadata every generated Kubernetes object carries, built in one place.

Labels: `app.kubernetes.io/{managed-by,part-of,version,name,component}` plus the project's
own; annotations: `mlc.dev/source`, the ml.yaml path that produced the object, so that a
person looking at a live object can find where it came from.
"""

from __future__ import annotations

from typing import Any

from ..ir import COST_LABELS, Origin, ResolvedProject
from ..names import label_value

SOURCE_ANNOTATION = "mlc.dev/source"


def labels(project: ResolvedProject, name: str, component: str | None = None) -> dict[str, str]:
    out = dict(project.labels)
    out["app.kubernetes.io/name"] = label_value(name)
    if component:
        out["app.kubernetes.io/component"] = label_value(component)
    return out


def cost_labels(project: ResolvedProject) -> dict[str, str]:
    """The cost-allocation labels, for pods that a controller creates from a template."""
    return {k: v for k, v in project.labels.items() if k in COST_LABELS}


def selector_labels(project: ResolvedProject, name: str) -> dict[str, str]:
    """The stable subset used in selectors: selectors are immutable, so no version here."""
    return {"app.kubernetes.io/part-of": project.name, "app.kubernetes.io/name": label_value(name)}


def metadata(project: ResolvedProject, name: str, *, origin: Origin | None = None,
             component: str | None = None, namespaced: bool = True,
             annotations: dict[str, str] | None = None,
             extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = project.platform.namespace
    meta["labels"] = {**labels(project, name, component), **(extra_labels or {})}
    notes = {SOURCE_ANNOTATION: origin.annotation() if origin else project.source.split(" ")[0]}
    notes.update(annotations or {})
    meta["annotations"] = notes
    return meta


def account_with_role(project: ResolvedProject, meta: dict[str, Any],
                      rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ServiceAccount with a token, and a Role of exactly `rules` bound to it, all three
    named `meta`'s name: for the workflow steps that patch one object through the API."""
    name = meta["name"]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta,
         "automountServiceAccountToken": True},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name,
                       "namespace": project.platform.namespace}]},
    ]
