"""The Argo backend: the project's ML lifecycle as Argo Workflows and Argo Events objects.

Per environment, under `argo/`:
- `workflowtemplate-<pipeline>.yaml`: every pipeline of the IR (training per model, drift
  check, batch scoring, feature materialisation) as a WorkflowTemplate (templates.py);
- `cronworkflow-<pipeline>.yaml`: one per scheduled pipeline (schedules.py);
- `eventsource-<name>.yaml`, `sensor-<name>.yaml`: retraining on drift, on a quality drop
  (events.py) and on the events of `training.triggers` (event_sources.py);
- `rbac.yaml`: the service accounts and the Roles they need (rbac.py).
Workflow objects are built with hera's typed classes; Argo Events has no hera builders, so its
objects are dicts checked against Argo Events' JSON schema by the tests.
"""

from __future__ import annotations

from ...ir import ResolvedProject
from ...output import OutputFile
from . import cooldown, event_sources, events, rbac, retrain_triggers
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
    for trigger in project.event_triggers.values():
        obj = event_sources.event_source(project, trigger)
        files.append(OutputFile(f"{FOLDER}/eventsource-{obj['metadata']['name']}.yaml", obj,
                                source))
    gated = retrain_triggers.all_triggers(project)
    for check in gated:
        files.append(OutputFile(f"{FOLDER}/sensor-{events.sensor_name(check)}.yaml",
                                events.sensor(project, check), source))
    if gated:
        files.append(OutputFile(
            f"{FOLDER}/configmap-{cooldown.cooldown_config_map_name(project)}.yaml",
            cooldown.cooldown_config_map(project), source))
    objects = rbac.rbac_objects(project)
    if objects:
        files.append(OutputFile(f"{FOLDER}/rbac.yaml", objects, source))
    return files
