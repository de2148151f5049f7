"""The exit handler: after every run, success or failure, tell the pipeline's routes.

It runs `python -m mlc.runtime notify` in the training image with the run's outcome in its
environment (see docs/training-contract.md, "Notification step"). Each route's secret (a
webhook URL, a routing key, a password) is a file named after the route, mounted from its
Secret; the runtime reads the route's kind and settings from project.json.
"""

from __future__ import annotations

from hera.workflows import Container
from hera.workflows import models as m

from mlc import step_contract as sc

from ...ir import Pipeline, ResolvedProject, Retries
from ...resolve import PROJECT_JSON
from .. import pods
from ..escape import container_text
from . import steps, volumes
from .expressions import WORKFLOW_FAILURES, WORKFLOW_NAME, WORKFLOW_STATUS, literal
from .parsed import parsed

TEMPLATE = "notify"
COMMAND = ["python", "-m", "mlc.runtime", "notify"]
# A notification is small; it must not wait for the (possibly GPU) hardware of the steps.
HARDWARE = {"requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"}}
# A flaky webhook is retried briefly; the run's own status is already decided.
RETRIES = Retries(limit=2, backoff_seconds=10, backoff_factor=2, backoff_max_seconds=60)
TIMEOUT_SECONDS = 300


def notify_step(project: ResolvedProject, pipeline: Pipeline) -> Container | None:
    """None when nobody is to be told (no routes): Argo's metrics still count the run."""
    if not pipeline.routes:
        return None
    env = {
        "HOME": sc.HOME,
        "MLC_PROJECT_JSON": PROJECT_JSON,
        "MLC_PIPELINE": pipeline.name,
        "MLC_RUN_ID": WORKFLOW_NAME,
        "MLC_RUN_STATUS": WORKFLOW_STATUS,
        "MLC_RUN_FAILURES": WORKFLOW_FAILURES,
        "MLC_NOTIFY_ROUTES": ",".join(pipeline.routes),
        "MLC_ROUTE_SECRETS_DIR": volumes.ROUTE_SECRETS_DIR,
        "MLFLOW_TRACKING_URI": container_text(literal(project.platform.mlflow_tracking_uri)),
    }
    mounts = [volumes.project_json_mount(), {"name": volumes.TMP, "mountPath": "/tmp"}]
    if any(project.routes[r].secret for r in pipeline.routes):
        mounts.append({"name": volumes.ROUTE_SECRETS, "mountPath": volumes.ROUTE_SECRETS_DIR,
                       "readOnly": True})
    return Container(
        name=TEMPLATE,
        image=project.images["train"].ref,
        command=list(COMMAND),
        args=["--project", PROJECT_JSON, "--pipeline", pipeline.name],
        env=[parsed(m.EnvVar, {"name": k, "value": v}) for k, v in sorted(env.items())],
        resources=parsed(m.ResourceRequirements, HARDWARE),
        security_context=parsed(m.SecurityContext, pods.container_security_context()),
        volume_mounts=[parsed(m.VolumeMount, v) for v in mounts],
        active_deadline_seconds=m.IntOrString(__root__=TIMEOUT_SECONDS),
        retry_strategy=steps.retry_strategy(RETRIES),
    )
