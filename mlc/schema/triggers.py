"""`models.<name>.training.triggers`: retrain on an event, through the same cooldown and cap as
drift retraining (docs/triggers.md).

Each trigger is exactly one of `object` (a new object in a MinIO, S3 or GCS bucket), `topic`
(a message on a Kafka source's topic) or `pipeline` (another mlc pipeline succeeded).
"""


from typing import Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .types import Name, Seconds, Spec

# S3 bucket names (and MinIO's): lowercase, digits, dots and dashes.
_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# A key prefix or suffix: printable, no whitespace and no template braces.
_KEY_PART = r"^[^\s{}]{0,200}$"


class ObjectTrigger(Spec):
    """A new object in a bucket: MinIO's `s3:ObjectCreated:*` notification, an AWS S3
    bucket's notification in an SQS queue, or a GCS bucket's Pub/Sub notification."""

    store: Literal["minio", "s3", "gcs"] = "minio"
    """The object store. `minio`: Argo Events listens with MinIO's own notification API;
    `s3`: it reads the SQS queue the bucket notifies (`queue`, `region`); `gcs`: it pulls the
    Pub/Sub subscription of the bucket's notifications (`project`, `subscription`)."""
    endpoint: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
                                 examples=["minio.storage.svc:9000"])
    """MinIO's API, `host[:port]` (`store: minio` only)."""
    bucket: str = Field(pattern=_BUCKET, examples=["fraud-landing"])
    """The bucket watched."""
    prefix: str = Field("", pattern=_KEY_PART, examples=["transactions/"])
    """Only keys that start with this."""
    suffix: str = Field("", pattern=_KEY_PART, examples=[".parquet"])
    """Only keys that end with this."""
    access_key_secret: Name | None = None
    """Secret (under `secrets:`) holding the access key (MinIO; S3 without an identity)."""
    secret_key_secret: Name | None = None
    """Secret (under `secrets:`) holding the secret key (MinIO; S3 without an identity)."""
    insecure: bool = False
    """Plain HTTP to the store; allowed in development environments only (MinIO)."""
    queue: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$",
                              examples=["fraud-landing-events"])
    """`store: s3`: the SQS queue that the bucket's `s3:ObjectCreated:*` notifications go to."""
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$",
                               examples=["eu-west-1"])
    """`store: s3`: the queue's AWS region."""
    aws_role_arn: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$",
        examples=["arn:aws:iam::123456789012:role/fraud-landing-events"])
    """`store: s3`: the IAM role the trigger's own ServiceAccount takes (IRSA), instead of
    keys."""
    project: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
                                examples=["acme-data"])
    """`store: gcs`: the Google Cloud project of the subscription."""
    subscription: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$",
                                     examples=["fraud-landing-mlc"])
    """`store: gcs`: the existing Pub/Sub subscription of the bucket's notifications topic."""
    credentials_secret: Name | None = None
    """`store: gcs`: Secret (under `secrets:`) holding a service account's JSON key."""
    gcp_service_account: str | None = Field(
        None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]"
        r"\.iam\.gserviceaccount\.com$",
        examples=["fraud-landing@acme-data.iam.gserviceaccount.com"])
    """`store: gcs`: the Google service account the trigger's own ServiceAccount acts as
    (GKE Workload Identity), instead of a key."""
    pod_identity: bool = False
    """`s3` or `gcs`: credentials from the cloud identity bound to the trigger's own
    ServiceAccount outside ml.yaml (EKS Pod Identity, GKE Workload Identity Federation)."""


class TopicFilter(Spec):
    """Only messages whose JSON `field` has one of `values`."""

    field: str = Field(min_length=1, max_length=200, examples=["type", "meta.kind"])
    """A field of the message's JSON body; dots go into nested objects."""
    values: list[str] = Field(min_length=1, max_length=50)
    """The values that trigger, compared as exact strings."""


class TopicTrigger(Spec):
    """A message on a Kafka source's topic."""

    source: Name
    """A `type: kafka` source: its brokers, topic and `auth` are used."""
    filter: TopicFilter | None = None
    """Only some messages trigger; without it, every message does."""


class PipelineTrigger(Spec):
    """Another mlc pipeline of this project succeeded."""

    name: Name = Field(examples=["materialize-features", "train-fraud-classifier"])
    """The pipeline (its WorkflowTemplate's name, as `mlc plan` lists them)."""


class Trigger(Spec):
    """Exactly one of `object`, `topic`, `pipeline`; then the cooldown and the cap."""

    object: ObjectTrigger | None = None
    """A new object in a bucket."""
    topic: TopicTrigger | None = None
    """A message on a topic."""
    pipeline: PipelineTrigger | None = None
    """Another pipeline succeeded."""
    cooldown: Seconds = Field("24h", description="Least time between two runs it starts.")
    max_runs: PositiveInt = Field(3, le=100, description="At most this many runs ...")
    per: Seconds = Field("7d", description="... in this period.")

    @model_validator(mode="after")
    def _one(self):
        if sum(x is not None for x in (self.object, self.topic, self.pipeline)) != 1:
            raise PydanticCustomError("mlc_one_of", "a trigger is exactly one of `object`, "
                                      "`topic`, `pipeline`", {})
        return self
