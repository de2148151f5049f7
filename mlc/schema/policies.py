"""A policies file: declarative rules over the resolved project and the plan's change.

Named in ml.yaml (`policies: policies.yaml`), so that many projects can share one file.
docs/policies.md describes paths and operators.
"""


from typing import Literal

from pydantic import Field

from .types import Name, Spec

# Operators on the new value; and on the change from the old tree's value to the new one.
STATE_OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "notIn", "exists", "absent")
CHANGE_OPERATORS = ("notIncreased", "notDecreased", "unchanged")
Scalar = str | int | float | bool


class UserPolicy(Spec):
    name: Name
    description: str | None = None
    path: str = Field(pattern=r"^[A-Za-z0-9_*-]+(\.[A-Za-z0-9_*-]+)*$", description="Dotted "
                      "path into the resolved project (the names of `project.json`), `*` for "
                      "any key or item: `endpoints.*.autoscaling.min_replicas`.")
    on: Literal["project", "objects"] = Field(
        "project", description="What `path` goes into: `project`, the resolved project; "
        "`objects`, the Kubernetes objects the environment renders, as `<Kind>.<name>.<field>"
        "...` (`Deployment.*.spec.template.spec.containers.*.image`).")
    operator: Literal["==", "!=", "<", "<=", ">", ">=", "in", "notIn", "exists", "absent",
                      "notIncreased", "notDecreased", "unchanged"]
    value: Scalar | list[Scalar] | None = None
    environments: list[str] | None = Field(None, description="Only these; unset: every one.")
    severity: Literal["error", "warning"] = Field(
        "error", description="`error` blocks apply unless accepted; `warning` is shown only.")
    message: str | None = Field(None, description="What to tell the author; default: the "
                                "rule and the value found.")


class PolicyFile(Spec):
    api_version: Literal["mlc.dev/v1"]
    kind: Literal["Policies"]
    policies: list[UserPolicy] = Field(default_factory=list)
