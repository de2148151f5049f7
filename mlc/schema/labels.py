"""Where the labels of logged predictions come from and how they join: shared by the A/B
verdict (`serving.<e>.rollout.verdict`) and the model-quality monitor
(`monitoring.quality.<name>`), which read the prediction log through one join
(mlc/runtime/verdict/join.py)."""


from typing import Literal

from pydantic import Field

from .types import FieldName, Name, Seconds, Spec

# The metrics computed from logged predictions and labels: the names the trainer reports
# (step_contract.py), so a training evaluation's figure is comparable.
LabelledMetric = Literal["accuracy", "roc_auc", "log_loss", "rmse", "mae"]


class LabelsJoin(Spec):
    labels: Name = Field(description="The source the labels arrive in.")
    key: FieldName = Field("request_id", description="The column joining a label to a logged "
                           "prediction: `request_id` (the `x-request-id` a client sent) or an "
                           "input feature the log holds; the labels source has a column of "
                           "the same name.")
    entity: Name | None = Field(None, description="Join on an entity of the endpoint's model "
                                "instead of `key`: a label joins the latest prediction for "
                                "that entity at or before the label's time (the source's "
                                "`timestampField`), at most `within` earlier.")
    within: Seconds | None = Field(None, description="With `entity`: how long before its "
                                   "label a prediction may be (default 1d).")
    label_column: FieldName | None = Field(None, description="The labels source's column "
                                           "holding the outcome; defaults to the model's "
                                           "`label.column`.")
