"""Service accounts and Roles: each identity may do exactly what its pods do, nothing more.

- the workflow's pods: Argo's executor reports each step's result (WorkflowTaskResults), a
  distributed training step creates a JobSet and watches it until it ends, and a search with
  `platform.katib` its Katib Experiment;
- the Sensor: creates the gate Workflow of a drift alert (cooldown.py);
- the gate's pods: report their results, record a start in the cooldown ConfigMap (that one
  object only), and create the training Workflow;
- the Sensors of event triggers (`training.triggers`) likewise;
- the alerts EventSource receives webhooks, the bucket and topic EventSources read their store
  or brokers: none gets a token; a cloud bucket trigger that authenticates as its pod (IRSA,
  Workload Identity) has an account of its own, carrying the identity's annotation;
- the pipeline-trigger EventSource lists and watches Workflows, nothing more.
"""

from __future__ import annotations

from typing import Any

from ...ir import ResolvedProject
from ...names import dns_label
from ..objects import metadata
from . import cooldown, event_sources, events, retrain_triggers
from .distributed import JOBSET_API_VERSION
from .katib import API_VERSION as KATIB_API_VERSION

RBAC_API = "rbac.authorization.k8s.io/v1"


def _account(project: ResolvedProject, name: str, component: str, *,
             token: bool, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": metadata(project, name, component=component,
                                    annotations=annotations)}
    if not token:
        account["automountServiceAccountToken"] = False
    return account


def _role(project: ResolvedProject, account: str, component: str,
          rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    name = dns_label(account)
    role = {"apiVersion": RBAC_API, "kind": "Role",
            "metadata": metadata(project, name, component=component), "rules": rules}
    binding = {"apiVersion": RBAC_API, "kind": "RoleBinding",
               "metadata": metadata(project, name, component=component),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": account,
                             "namespace": project.platform.namespace}]}
    return [role, binding]


TASK_RESULTS = {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                "verbs": ["create", "patch"]}
# a `resource` EventSource lists, then watches (an informer); it reads nothing else
WATCH_WORKFLOWS = {"apiGroups": ["argoproj.io"], "resources": ["workflows"],
                   "verbs": ["list", "watch"]}
CREATE_WORKFLOWS = {"apiGroups": ["argoproj.io"], "resources": ["workflows"],
                    "verbs": ["create"]}


def workflow_rules(project: ResolvedProject) -> list[dict[str, Any]]:
    rules = [dict(TASK_RESULTS)]
    distributed = any(s.kind == "train" and s.nodes > 1
                      for p in project.pipelines.values() for s in p.steps)
    if distributed:
        rules.append({"apiGroups": [JOBSET_API_VERSION.split("/")[0]], "resources": ["jobsets"],
                      "verbs": ["create", "get", "list", "watch"]})
    if any(m.training.search is not None and m.training.search.engine == "katib"
           for m in project.models.values()):
        # the search step creates its Katib Experiment and watches it until it ends
        rules.append({"apiGroups": [KATIB_API_VERSION.split("/")[0]],
                      "resources": ["experiments"], "verbs": ["create", "get", "list", "watch"]})
    return rules


def rbac_objects(project: ResolvedProject) -> list[dict[str, Any]]:
    if not project.pipelines:
        return []
    account = project.platform.service_account
    out = [_account(project, account, "workflows", token=True),
           *_role(project, account, "workflows", workflow_rules(project))]
    if retrain_triggers.all_triggers(project):
        sensor = events.sensor_account(project)
        out += [_account(project, sensor, "drift-retraining", token=True),
                *_role(project, sensor, "drift-retraining", [dict(CREATE_WORKFLOWS)]),
                _account(project, cooldown.gate_account(project), "drift-retraining",
                         token=True),
                *_role(project, cooldown.gate_account(project), "drift-retraining", [
                    dict(TASK_RESULTS), dict(CREATE_WORKFLOWS),
                    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"],
                     "resourceNames": [cooldown.cooldown_config_map_name(project)]}])]
    if retrain_triggers.retrain_checks(project):
        out.append(_account(project, events.event_source_account(project), "drift-alerts",
                            token=False))
    shared = [t for t in project.event_triggers.values()
              if t.kind == "topic" or (t.kind == "object"
                                       and event_sources.own_account(project, t) is None)]
    if shared:
        out.append(_account(project, event_sources.trigger_source_account(project),
                            event_sources.COMPONENT, token=False))
    # a cloud bucket trigger that authenticates as its pod: its own account, no token (the
    # cloud's identity webhook or metadata server gives the credentials, not the API server)
    for t in sorted(project.event_triggers.values(), key=lambda t: t.k8s_name):
        own = event_sources.own_account(project, t)
        if own is not None:
            out.append(_account(project, own, event_sources.COMPONENT, token=False,
                                annotations=event_sources.cloud_identity(t)))
    if any(t.kind == "pipeline" for t in project.event_triggers.values()):
        watcher = event_sources.watcher_account(project)
        out += [_account(project, watcher, event_sources.COMPONENT, token=True),
                *_role(project, watcher, event_sources.COMPONENT, [dict(WATCH_WORKFLOWS)])]
    return out
