"""CronWorkflows: every scheduled pipeline (retraining, drift checks, batch scoring, feature
materialisation) runs its WorkflowTemplate on the schedule from ml.yaml.

Written for the current CronWorkflow API (Argo Workflows v3.6 and later): a `schedules` list
(the single `schedule` field is deprecated) with its time zone. The CronWorkflow only refers to
the template, so a run started by hand and a scheduled one are the same workflow.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import CronWorkflow, Parameter
from hera.workflows import models as m

from ...ir import Pipeline, ResolvedProject
from ...names import dns_label
from ..objects import metadata
from .expressions import WORKFLOW_SCHEDULED_TIME
from .model_dict import to_dict
from .templates import origin, template_name

# Argo names each run `<cron workflow>-<unix time>`: 52 characters leave room for it.
NAME_MAX = 52
# A run still going when the next is due is left alone: the next one is skipped.
CONCURRENCY_POLICY = "Forbid"
# A run missed by more than this (controller down) is skipped rather than started late.
STARTING_DEADLINE_SECONDS = 600
SUCCESSFUL_HISTORY = 3
FAILED_HISTORY = 5
TRIGGER_LABEL = "mlc.dev/trigger"
REASON_PARAMETER = "reason"
DATE_PARAMETER = "date"  # batch scoring's "as of" (RFC 3339 accepted)


def cron_name(pipeline: Pipeline) -> str:
    return dns_label(pipeline.name, max_len=NAME_MAX)


def cron_workflow(project: ResolvedProject, pipeline: Pipeline) -> dict[str, Any]:
    assert pipeline.schedule, pipeline.name
    meta = metadata(project, cron_name(pipeline), origin=origin(project, pipeline),
                    component=pipeline.kind)
    names = {p.name for p in pipeline.parameters}
    arguments = [Parameter(name=REASON_PARAMETER, value="schedule")] \
        if REASON_PARAMETER in names else []
    if DATE_PARAMETER in names:
        # a late or retried run still scores the day it was scheduled for, not the day it ran
        arguments.append(Parameter(name=DATE_PARAMETER, value=WORKFLOW_SCHEDULED_TIME))
    cron = CronWorkflow(
        name=meta["name"],
        namespace=meta["namespace"],
        labels=meta["labels"],
        annotations=meta["annotations"],
        schedules=[pipeline.schedule],
        timezone=pipeline.timezone,
        concurrency_policy=CONCURRENCY_POLICY,
        starting_deadline_seconds=STARTING_DEADLINE_SECONDS,
        successful_jobs_history_limit=SUCCESSFUL_HISTORY,
        failed_jobs_history_limit=FAILED_HISTORY,
        workflow_metadata=m.WorkflowMetadata(labels={TRIGGER_LABEL: "schedule"}),
        workflow_template_ref=m.WorkflowTemplateRef(name=template_name(pipeline)),
        arguments=arguments or None,
    )
    return to_dict(cron)
