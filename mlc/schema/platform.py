"""`platform`: where and how an environment runs. Usually set per environment in overlays."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .types import DnsLabel, Name, Spec


class Mlflow(Spec):
    tracking_uri: str = Field("http://mlflow.mlflow.svc.cluster.local:5000", min_length=1)
    credentials_secret: Name | None = None


class OnlineStore(Spec):
    type: Literal["sqlite", "redis", "postgres", "dynamodb", "bigtable", "datastore",
                  "snowflake"] = "sqlite"
    path: str = Field("data/online_store.db", description="sqlite only.")
    connection_secret: Name | None = Field(None, description="Connection string, by reference.")


class OfflineStore(Spec):
    type: Literal["file", "bigquery", "snowflake", "redshift", "spark", "postgres"] = "file"
    connection_secret: Name | None = None


class FeatureStore(Spec):
    provider: Literal["local", "gcp", "aws"] = "local"
    registry: str = Field("data/registry.db", min_length=1,
                          description="Registry path or URI (s3://, gs://, or a SQL URL secret).")
    online_store: OnlineStore = Field(default_factory=OnlineStore)
    offline_store: OfflineStore = Field(default_factory=OfflineStore)


class ArgoCd(Spec):
    repo_url: str = Field("https://github.com/example/ml-platform.git", min_length=1)
    target_revision: str = "main"
    path: str = Field("deploy", description="Where the compiled tree lives in the repository.")
    project: DnsLabel = "default"
    namespace: DnsLabel = "argocd"
    server: str = "https://kubernetes.default.svc"


class Platform(Spec):
    namespace: DnsLabel | None = Field(None, description="Defaults to `<project>-<env>`.")
    image_policy: Literal["digest", "tag"] = Field(
        "digest", description="`digest` refuses mutable tags; allow `tag` only in dev.")
    gpu_node_provisioning: Literal["static", "autoscaled"] = Field(
        "static", description="`autoscaled` when GPU nodes are created on demand (slow start).")
    service_account: DnsLabel | None = Field(None, description="Defaults to `<project>-workflow`.")
    artifact_root: str = Field("s3://mlc-artifacts", min_length=1,
                               description="Where data snapshots, reports and prediction logs go.")
    mlflow: Mlflow = Field(default_factory=Mlflow)
    feature_store: FeatureStore = Field(default_factory=FeatureStore)
    argocd: ArgoCd = Field(default_factory=ArgoCd)
