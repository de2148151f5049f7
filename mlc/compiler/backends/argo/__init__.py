"""The Argo backend: the project's ML lifecycle as Argo Workflows and Argo Events objects.

Per environment, under `argo/`:
- `workflowtemplate-<pipeline>.yaml`: every pipeline of the IR (training per model, drift
  check, batch scoring, feature materialisation) as a WorkflowTemplate (templates.py);
- `cronworkflow-<pipeline>.yaml`: one per scheduled pipeline (schedules.py);
- `eventsource-<name>.yaml`, `sensor-<name>.yaml`: drift-triggered retraining (events.py);
- `rbac.yaml`: the service accounts and the Roles they need (rbac.py).
Workflow objects are built with hera's typed classes; Argo Events has no hera builders, so its
objects are dicts checked against Argo Events' JSON schema by the tests.
"""

from __future__ import annotations

from ...ir import ResolvedProject
from ...output import OutputFile
from . import cooldown, events, rbac, retrain_triggers
from .schedules import cron_name, cron_workflow
from .templates import template_name, workflow_template

FOLDER = "argo"


def emit(project: ResolvedProject) -> list[OutputFile]:
    source = project.source
    files = []
    for pipeline in project.pipelines.values():
        files.append(OutputFile(f"{FOLDER}/workflowtemplate-{template_name(pipeline)}.yaml",
                                workflow_template(project, pipeline), source))
        if pipeline.schedule:
            files.append(OutputFile(f"{FOLDER}/cronworkflow-{cron_name(pipeline)}.yaml",
                                    cron_workflow(project, pipeline), source))
    checks = retrain_triggers.retrain_checks(project)
    if checks:
        files.append(OutputFile(f"{FOLDER}/eventsource-{events.event_source_name(project)}.yaml",
                                events.event_source(project, checks), source))
        for check in checks:
            files.append(OutputFile(f"{FOLDER}/sensor-{events.sensor_name(check)}.yaml",
                                    events.sensor(project, check), source))
        files.append(OutputFile(
            f"{FOLDER}/configmap-{cooldown.cooldown_config_map_name(project)}.yaml",
            cooldown.cooldown_config_map(project), source))
    objects = rbac.rbac_objects(project)
    if objects:
        files.append(OutputFile(f"{FOLDER}/rbac.yaml", objects, source))
    return files
