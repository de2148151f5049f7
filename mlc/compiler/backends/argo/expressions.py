"""Argo's `{{...}}` template syntax: the only tags mlc writes, and how user text avoids it.

Argo substitutes `{{tag}}` everywhere in a workflow's templates, arguments and metrics, in a
single pass, before the pods are created. Text from ml.yaml (a custom trainer's arguments, an
MLflow URI, a toleration value, ...) must therefore never be able to open a tag of its own:
`literal()` rewrites every `{{` in it as the expression tag `{{='{{'}}`, which Argo evaluates
back to the two braces. Every tag mlc writes on purpose is built by a function below, so a
test can list exactly which tags the output may contain.
"""

from __future__ import annotations

import re

# What Argo turns back into "{{": an expression tag whose value is a string literal.
_OPEN_BRACES = "{{='{{'}}"
# Parameter names reach tags only if they are plain identifiers (the IR guarantees it).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

WORKFLOW_NAME = "{{workflow.name}}"
WORKFLOW_STATUS = "{{workflow.status}}"
WORKFLOW_NAMESPACE = "{{workflow.namespace}}"
WORKFLOW_DURATION = "{{workflow.duration}}"
WORKFLOW_FAILURES = "{{workflow.failures}}"
# When a CronWorkflow meant the run to start (RFC 3339); set only for runs it starts.
WORKFLOW_SCHEDULED_TIME = "{{workflow.scheduledTime}}"
# Unix seconds of the run's creation (Argo sets `workflow.creationTimestamp.s` so).
WORKFLOW_CREATED_UNIX = "{{workflow.creationTimestamp.s}}"


# The current element of a task's `withSequence` (a search trial's number).
SEQUENCE_ITEM = "{{item}}"


def literal(text: str) -> str:
    """`text` as Argo will show it: no tag can start inside it."""
    return text.replace("{{", _OPEN_BRACES)


def _identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"parameter name {name!r} is not an identifier")
    return name


def parameter(name: str) -> str:
    """The value of a workflow parameter, substituted as text (JSON-escaped by Argo)."""
    return "{{workflow.parameters." + _identifier(name) + "}}"


def input_parameter(name: str) -> str:
    """The value of one of the template's own input parameters."""
    return "{{inputs.parameters." + _identifier(name) + "}}"


def parameter_base64(name: str) -> str:
    """A workflow parameter, base64-encoded: safe to place inside any quoted manifest text."""
    return "{{=toBase64(workflow.parameters." + _identifier(name) + ")}}"


def parameter_is_true(name: str) -> str:
    """A `when` condition. The parameter's enum admits only "true" and "false", so the text
    Argo substitutes before evaluating the condition cannot change the expression."""
    return parameter(name) + " == true"


# Every tag the backend may emit, as regular expressions over the text between the braces.
ALLOWED_TAGS = (
    re.compile(r"='\{\{'"),
    re.compile(r"workflow\.(name|namespace|status|duration|failures|creationTimestamp\.s)"),
    # the drift gate's (cooldown.py)
    re.compile(r"steps\.cooldown\.outputs\.result"),
    re.compile(r"inputs\.parameters\.last_start"),
    # a search trial's number (search.py)
    re.compile(r"inputs\.parameters\.trial"),
    re.compile(r"item"),
    re.compile(r"workflow\.parameters\.[A-Za-z_][A-Za-z0-9_]*"),
    re.compile(r"=toBase64\(workflow\.parameters\.[A-Za-z_][A-Za-z0-9_]*\)"),
)
