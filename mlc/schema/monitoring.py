"""`monitoring`: drift checks, what happens on drift, and where alerts go."""


from typing import Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .labels import LabelledMetric, LabelsJoin
from .types import Cron, FieldName, Fraction, Name, Seconds, Spec

DriftMethod = Literal["auto", "psi", "ks", "wasserstein", "jensenshannon", "kl_div", "chisquare",
                      "z"]


class DriftWindow(Spec):
    source: Name | None = Field(None, description="A source; defaults to the prediction log "
                                "(current) or the training snapshot (reference).")
    window: Seconds = "1d"
    """How much recent data the window holds."""


class OnDrift(Spec):
    action: Literal["alert", "retrain"] = "alert"
    """`alert` only, or `retrain` the model as well."""
    cooldown: Seconds = Field("24h", description="Least time between two retrains.")
    max_runs: PositiveInt = Field(3, le=100, description="At most this many retrains ...")
    per: Seconds = Field("7d", description="... in this period.")


class DriftCheck(Spec):
    endpoint: Name | None = None
    """Endpoint (under `serving`) whose predictions are watched."""
    model: Name | None = None
    """Or a model whose training data is compared with a source."""
    reference: DriftWindow | Literal["training"] = "training"
    """What "normal" is: the training snapshot, or a window of a source."""
    current: DriftWindow = Field(default_factory=DriftWindow)
    """The recent data compared with the reference."""
    features: list[FieldName] = Field(default_factory=list, description="Empty means all inputs.")
    method: DriftMethod = "auto"
    """Statistical test per feature; `auto` picks one by type and size."""
    threshold: float | None = Field(None, gt=0, le=1000, description="Per-feature threshold; "
                                    "defaults to the method's own.")
    drift_share: Fraction = Field(0.5, description="Share of drifted features that makes the "
                                  "dataset drifted.")
    schedule: Cron = "0 * * * *"
    """When the check runs."""
    on_drift: OnDrift = Field(default_factory=OnDrift)
    """What happens when the dataset drifted."""
    routes: list[Name] = Field(default_factory=list, description="Notification routes.")

    @model_validator(mode="after")
    def _target(self):
        if (self.endpoint is None) == (self.model is None):
            raise PydanticCustomError("mlc_one_of",
                                      "a drift check watches exactly one `endpoint` or `model`", {})
        return self


class Slack(Spec):
    channel: str = Field(pattern=r"^#?[a-z0-9][a-z0-9._-]{0,79}$", examples=["#ml-alerts"])
    """Channel to post to, e.g. `#ml-alerts`."""
    webhook_secret: Name
    """Secret (under `secrets`) holding the incoming-webhook URL."""


class PagerDuty(Spec):
    routing_key_secret: Name
    """Secret (under `secrets`) holding the Events API v2 routing key."""


class Email(Spec):
    to: list[str] = Field(min_length=1)
    """Recipients."""
    smarthost: str = Field(pattern=r"^[A-Za-z0-9.-]+:[0-9]+$", examples=["smtp.example.com:587"])
    """SMTP server, `host:port`."""
    from_: str = Field(alias="from")
    """Sender address."""
    password_secret: Name | None = None
    """Secret (under `secrets`) holding the SMTP password, if any."""


class Webhook(Spec):
    url: str = Field(pattern=r"^https?://\S+$", examples=["https://hooks.example.com/mlc"])
    """URL Alertmanager posts to."""
    token_secret: Name | None = None
    """Secret (under `secrets`) holding a bearer token, if any."""


class Route(Spec):
    slack: Slack | None = None
    """Post to a Slack channel."""
    pagerduty: PagerDuty | None = None
    """Page through PagerDuty."""
    email: Email | None = None
    """Send an email."""
    webhook: Webhook | None = None
    """Post to a webhook."""

    @model_validator(mode="after")
    def _one(self):
        if sum(x is not None for x in (self.slack, self.pagerduty, self.email, self.webhook)) != 1:
            raise PydanticCustomError(
                "mlc_one_of", "a route is exactly one of `slack`, `pagerduty`, `email`, `webhook`",
                {})
        return self


class QualityMonitor(LabelsJoin):
    """The model's quality on live traffic, once the labels arrive: the prediction log of an
    online endpoint joined with a labels source, scored over a window on a schedule, and
    compared with the served version's training evaluation (docs/model-quality.md)."""

    endpoint: Name = Field(description="The online endpoint (under `serving`) whose "
                           "predictions are scored.")
    metrics: list[LabelledMetric] = Field(default_factory=list, max_length=5,
                                          description="accuracy, roc_auc, log_loss "
                                          "(classification), rmse, mae (regression); "
                                          "defaults to accuracy or rmse.")
    window: Seconds = Field("7d", description="Predictions made this long before a run are "
                            "scored.")
    schedule: Cron = Field("0 * * * *", description="When the monitor runs.")
    min_samples: PositiveInt = Field(200, le=100_000_000, description="Labelled predictions "
                                     "a run needs before it scores anything.")
    max_drop: float = Field(0.05, gt=0, le=1000, description="Alert when a metric is worse "
                            "than the served version's training evaluation by more than "
                            "this (in the metric's own units).")
    on_drop: OnDrift = Field(default_factory=OnDrift, description="What happens on a drop: "
                             "`alert`, or `retrain` as well, through drift's guarded "
                             "retraining (the same cooldown and cap).")
    routes: list[Name] = Field(default_factory=list, description="Notification routes.")


class Alerts(Spec):
    critical: list[Name] = Field(default_factory=list, description="Routes for critical alerts.")
    warning: list[Name] = Field(default_factory=list, description="Routes for warnings.")
    runbook_url: str = Field("https://runbooks.example.com/mlc",
                             pattern=r"^https?://\S+$", examples=["https://runbooks.example.com/mlc"],
                             description="Base of runbook links.")
    stale_model_after: Seconds = Field("14d", description="Alert when the production model is "
                                        "older than this.")


class Monitoring(Spec):
    drift: dict[Name, DriftCheck] = Field(default_factory=dict)
    """Drift checks, by name."""
    quality: dict[Name, QualityMonitor] = Field(default_factory=dict)
    """Model-quality monitors (live metrics from late labels), by name."""
    routes: dict[Name, Route] = Field(default_factory=dict)
    """Where notifications go, by name; checks and alerts refer to them."""
    alerts: Alerts = Field(default_factory=Alerts)
    """Which routes get the generated alerts, and their runbooks."""
    webhook_secret: Name | None = Field(
        None, description="The secret (in `secrets`) holding the bearer token that "
        "Alertmanager sends to the drift webhook which starts retraining, and which the "
        "webhook requires. Needed by `onDrift: {action: retrain}` outside development.")
