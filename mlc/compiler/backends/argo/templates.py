"""A pipeline of the IR as an Argo WorkflowTemplate: its steps as a DAG, run by hand, by a
CronWorkflow or by a Sensor, always through this one template.

The DAG is the IR's graph as it is (resolve decided the steps and their order). Around it:
the parameters a person or an event may set, a mutex so that one pipeline never runs twice at
once, an exit handler that notifies the pipeline's routes, Argo's metrics for the run, and the
pod defaults (service account, security context, volumes) every step shares.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import DAG, Parameter, Task, WorkflowTemplate
from hera.workflows import models as m

from ...ir import Origin, Pipeline, ResolvedProject
from .. import pods
from ..objects import cost_labels, metadata
from . import notify, volumes
from .distributed import distributed_step
from .expressions import literal, parameter_is_true
from .metrics import workflow_metrics
from .model_dict import to_dict
from .parsed import parsed
from .search import search_templates, task_template
from .steps import container_step, executor_patch

ENTRYPOINT = "pipeline"
PROMOTE_PARAMETER = "promote"
BOOLEAN = ["false", "true"]
# Finished runs stay for inspection (logs, failures) this long, then Argo deletes them.
KEEP_SUCCEEDED_SECONDS = 7 * 86400
KEEP_FAILED_SECONDS = 14 * 86400


def origin(project: ResolvedProject, pipeline: Pipeline) -> Origin | None:
    """Where in ml.yaml the pipeline comes from, for the `mlc.dev/source` annotation."""
    if pipeline.kind == "training" and pipeline.model:
        return project.models[pipeline.model].origin
    if pipeline.kind == "drift" and pipeline.drift_check:
        return project.drift_checks[pipeline.drift_check].origin
    if pipeline.kind in ("batch_scoring", "ab_verdict", "model_quality") and pipeline.endpoint:
        return project.endpoints[pipeline.endpoint].origin
    return None


def template_name(pipeline: Pipeline) -> str:
    return pipeline.name


def _parameters(pipeline: Pipeline) -> list[Parameter]:
    out = []
    for p in pipeline.parameters:
        # an enum makes Argo refuse any other value at submission, so that the `when` of the
        # promote step compares only "true" or "false"
        enum = BOOLEAN if p.name == PROMOTE_PARAMETER else None
        out.append(Parameter(name=p.name, value=literal(p.default),
                             description=literal(p.description), enum=enum))
    return out


def _tasks(project: ResolvedProject, pipeline: Pipeline) -> list[Task]:
    tasks = []
    for step in pipeline.steps:
        when = (parameter_is_true(PROMOTE_PARAMETER)
                if step.kind == "promote" and PROMOTE_PARAMETER in step.parameters else None)
        # a search's task runs its fan-out DAG, which runs the step's template per trial (or
        # the step that creates its Katib Experiment)
        template = task_template(project, pipeline, step) if step.kind == "search" \
            else step.name
        tasks.append(Task(name=step.name, template=template,
                          dependencies=list(step.depends) or None, when=when))
    return tasks


def workflow_template(project: ResolvedProject, pipeline: Pipeline) -> dict[str, Any]:
    step_templates = []
    for s in pipeline.steps:
        if s.kind == "search":
            step_templates.extend(search_templates(project, pipeline, s))
        elif s.kind == "train" and s.nodes > 1:
            step_templates.append(distributed_step(project, pipeline, s))
        else:
            step_templates.append(container_step(project, pipeline, s))
    exit_handler = notify.notify_step(project, pipeline)
    names = [ENTRYPOINT, *(t.name for t in step_templates)]
    if exit_handler:
        names.append(notify.TEMPLATE)
    if len(set(names)) != len(names):
        raise ValueError(f"pipeline {pipeline.name}: template names clash: {names}")
    meta = metadata(project, template_name(pipeline), origin=origin(project, pipeline),
                    component=pipeline.kind)
    claims = ([parsed(m.PersistentVolumeClaim, volumes.run_claim_template(project))]
              if volumes.shares_run_volume(pipeline) else None)
    template = WorkflowTemplate(
        name=meta["name"],
        namespace=meta["namespace"],
        labels=meta["labels"],
        annotations=meta["annotations"],
        entrypoint=ENTRYPOINT,
        arguments=_parameters(pipeline) or None,
        templates=[DAG(name=ENTRYPOINT, tasks=_tasks(project, pipeline)), *step_templates,
                   *([exit_handler] if exit_handler else [])],
        on_exit=notify.TEMPLATE if exit_handler else None,
        service_account_name=project.platform.service_account,
        # Every step's pod, so that OpenCost and Kubecost charge runs to the team.
        pod_metadata=parsed(m.Metadata, {"labels": cost_labels(project)}),
        security_context=parsed(m.PodSecurityContext, pods.pod_security_context()),
        # Argo's init and wait containers beside every container step (a resource step, whose
        # pod has no `wait`, sets its own patch)
        template_defaults=parsed(m.Template, {"podSpecPatch": executor_patch("wait")}),
        synchronization=m.Synchronization(mutexes=[m.Mutex(name=pipeline.concurrency_key)]),
        metrics=workflow_metrics(pipeline),
        volumes=[parsed(m.Volume, v) for v in volumes.workflow_volumes(project, pipeline)],
        volume_claim_templates=claims,
        # the run volume lives as long as the run; pods of succeeded steps go at once
        volume_claim_gc=m.VolumeClaimGC(strategy="OnWorkflowCompletion") if claims else None,
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
        ttl_strategy=m.TTLStrategy(seconds_after_success=KEEP_SUCCEEDED_SECONDS,
                                   seconds_after_failure=KEEP_FAILED_SECONDS),
    )
    return to_dict(template)
