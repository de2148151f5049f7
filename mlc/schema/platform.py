"""`platform`: where and how an environment runs. Usually set per environment in overlays."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .governance import Cost, Guardrails
from .types import DnsLabel, LabelKey, LabelValue, MemoryQuantity, Name, Spec


class Mlflow(Spec):
    tracking_uri: str = Field("http://mlflow.mlflow.svc.cluster.local:5000", min_length=1)
    credentials_secret: Name | None = None


# A store setting: a scalar, or a map of strings (Spark's `spark_conf`).
StoreOption = str | int | float | bool | dict[str, str]


class OnlineStore(Spec):
    type: Literal["sqlite", "redis", "postgres", "dynamodb", "bigtable", "datastore",
                  "snowflake"] = "sqlite"
    path: str = Field("data/online_store.db", description="sqlite only.")
    connection_secret: Name | None = Field(None, description="Connection string, by reference.")
    options: dict[str, StoreOption] = Field(
        default_factory=dict, description="Further settings of the Feast online store, as "
        "feature_store.yaml names them (e.g. `region`, `host`, `database`); never credentials.")


class OfflineStore(Spec):
    type: Literal["file", "bigquery", "snowflake", "redshift", "spark", "postgres"] = "file"
    connection_secret: Name | None = None
    options: dict[str, StoreOption] = Field(
        default_factory=dict, description="Further settings of the Feast offline store, as "
        "feature_store.yaml names them (e.g. `account`, `warehouse`, `database`, `region`, "
        "`iam_role`, `spark_conf`); never credentials: those come from `connectionSecret`.")


class FeatureStore(Spec):
    provider: Literal["local", "gcp", "aws"] = "local"
    registry: str = Field("data/registry.db", min_length=1,
                          description="Registry path or URI (s3://, gs://, or a SQL URL secret).")
    online_store: OnlineStore = Field(default_factory=OnlineStore)
    offline_store: OfflineStore = Field(default_factory=OfflineStore)


# The default repository: a placeholder that only a development environment may keep.
PLACEHOLDER_REPO_URL = "https://github.com/example/ml-platform.git"
# Knative's `config-features` flags that allow the pod fields a hardware profile may need;
# all three are "disabled" in a default Knative install.
KnativeFeature = Literal["kubernetes.podspec-nodeselector", "kubernetes.podspec-tolerations",
                         "kubernetes.podspec-priorityclassname"]


class Knative(Spec):
    features: list[KnativeFeature] = Field(
        default_factory=list, description="Knative feature flags enabled in the cluster "
        "(`config-features` in knative-serving); serverless endpoints on hardware profiles "
        "with node selectors, tolerations or a priority class need them.")


class ArgoCd(Spec):
    repo_url: str = Field(PLACEHOLDER_REPO_URL, min_length=1,
                          description="The git repository Argo CD syncs the compiled tree from.")
    target_revision: str = "main"
    path: str = Field("deploy", description="Where the compiled tree lives in the repository.")
    project: DnsLabel = "default"
    namespace: DnsLabel = "argocd"
    server: str = "https://kubernetes.default.svc"


class Prometheus(Spec):
    url: str = Field("http://prometheus-operated.monitoring.svc:9090", min_length=1,
                     description="The Prometheus that rollout gates query (Argo Rollouts' "
                     "AnalysisTemplates).")
    namespace: DnsLabel = Field("monitoring", description="Namespace of the Prometheus pods "
                                "that scrape the serving pods; NetworkPolicies let them in.")
    pod_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "prometheus"},
        description="Labels of those Prometheus pods.")


class SecretStore(Spec):
    """The External Secrets Operator store that `external:` secrets are read from."""

    name: DnsLabel
    kind: Literal["ClusterSecretStore", "SecretStore"] = Field(
        "ClusterSecretStore", description="`SecretStore` only where one exists in the "
        "environment's namespace already (mlc creates the namespace, not the store).")


class RunVolume(Spec):
    """The volume that the steps of one pipeline run share (data snapshot, model, metrics)."""

    size: MemoryQuantity = "10Gi"
    storage_class: DnsLabel | None = Field(None, description="Defaults to the cluster's.")
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = Field(
        "ReadWriteOnce", description="`ReadWriteMany` where training runs on several nodes.")


class Platform(Spec):
    namespace: DnsLabel | None = Field(None, description="Defaults to `<project>-<env>`.")
    development: bool | None = Field(
        None, description="`true` allows settings that only work on one machine or a "
        "throw-away cluster (local file paths, SQLite, the placeholder Argo CD repository). "
        "Unset: true for a project without environments/, false for each environment file.")
    production: bool | None = Field(
        None, description="`true` turns on the built-in policies (docs/policies.md). Unset: "
        "true for an environment named `prod` or `production` that is not development.")
    guardrails: Guardrails = Field(default_factory=Guardrails)
    cost: Cost = Field(default_factory=Cost)
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
    knative: Knative = Field(default_factory=Knative)
    run_volume: RunVolume = Field(default_factory=RunVolume)
    prometheus: Prometheus = Field(default_factory=Prometheus)
    secret_store: SecretStore | None = Field(
        None, description="Where `external:` secrets come from; required when there are any.")
    pushgateway_url: str | None = Field(
        None, pattern=r"^https?://\S+$", description="Where drift checks push their metrics; "
        "defaults to `http://prometheus-pushgateway.<namespace>.svc:9091`, the Pushgateway "
        "that the generated ServiceMonitor scrapes.")
