"""`monitoring`: drift checks, what happens on drift, and where alerts go."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .types import Cron, FieldName, Fraction, Name, Seconds, Spec

DriftMethod = Literal["auto", "psi", "ks", "wasserstein", "jensenshannon", "kl_div", "chisquare",
                      "z"]


class DriftWindow(Spec):
    source: Name | None = Field(None, description="A source; defaults to the prediction log "
                                "(current) or the training snapshot (reference).")
    window: Seconds = "1d"


class OnDrift(Spec):
    action: Literal["alert", "retrain"] = "alert"
    cooldown: Seconds = Field("24h", description="Least time between two retrains.")
    max_runs: PositiveInt = Field(3, le=100, description="At most this many retrains ...")
    per: Seconds = Field("7d", description="... in this period.")


class DriftCheck(Spec):
    endpoint: Name | None = None
    model: Name | None = None
    reference: DriftWindow | Literal["training"] = "training"
    current: DriftWindow = Field(default_factory=DriftWindow)
    features: list[FieldName] = Field(default_factory=list, description="Empty means all inputs.")
    method: DriftMethod = "auto"
    threshold: float | None = Field(None, gt=0, le=1000, description="Per-feature threshold; "
                                    "defaults to the method's own.")
    drift_share: Fraction = Field(0.5, description="Share of drifted features that makes the "
                                  "dataset drifted.")
    schedule: Cron = "0 * * * *"
    on_drift: OnDrift = Field(default_factory=OnDrift)
    routes: list[Name] = Field(default_factory=list, description="Notification routes.")

    @model_validator(mode="after")
    def _target(self):
        if (self.endpoint is None) == (self.model is None):
            raise PydanticCustomError("mlc_one_of",
                                      "a drift check watches exactly one `endpoint` or `model`", {})
        return self


class Slack(Spec):
    channel: str = Field(pattern=r"^#?[a-z0-9][a-z0-9._-]{0,79}$")
    webhook_secret: Name


class PagerDuty(Spec):
    routing_key_secret: Name


class Email(Spec):
    to: list[str] = Field(min_length=1)
    smarthost: str = Field(pattern=r"^[A-Za-z0-9.-]+:\d+$")
    from_: str = Field(alias="from")
    password_secret: Name | None = None


class Webhook(Spec):
    url: str = Field(pattern=r"^https?://\S+$")
    token_secret: Name | None = None


class Route(Spec):
    slack: Slack | None = None
    pagerduty: PagerDuty | None = None
    email: Email | None = None
    webhook: Webhook | None = None

    @model_validator(mode="after")
    def _one(self):
        if sum(x is not None for x in (self.slack, self.pagerduty, self.email, self.webhook)) != 1:
            raise PydanticCustomError(
                "mlc_one_of", "a route is exactly one of `slack`, `pagerduty`, `email`, `webhook`",
                {})
        return self


class Alerts(Spec):
    critical: list[Name] = Field(default_factory=list, description="Routes for critical alerts.")
    warning: list[Name] = Field(default_factory=list, description="Routes for warnings.")
    runbook_url: str = Field("https://runbooks.example.com/mlc",
                             pattern=r"^https?://\S+$", description="Base of runbook links.")
    stale_model_after: Seconds = Field("14d", description="Alert when the production model is "
                                        "older than this.")


class Monitoring(Spec):
    drift: dict[Name, DriftCheck] = Field(default_factory=dict)
    routes: dict[Name, Route] = Field(default_factory=dict)
    alerts: Alerts = Field(default_factory=Alerts)
    webhook_secret: Name | None = Field(
        None, description="The secret (in `secrets`) holding the bearer token that "
        "Alertmanager sends to the drift webhook which starts retraining, and which the "
        "webhook requires. Needed by `onDrift: {action: retrain}` outside development.")
