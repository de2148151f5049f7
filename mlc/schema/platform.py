"""`platform`: where and how an environment runs. Usually set per environment in overlays."""


import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from .governance import Cost, Guardrails
from .lineage import Lineage
from .streams import Keda
from .types import DnsLabel, LabelKey, LabelValue, MemoryQuantity, Name, ProjectNamespace, Spec


class Mlflow(Spec):
    tracking_uri: str = Field("http://mlflow.mlflow.svc.cluster.local:5000", min_length=1)
    """MLflow tracking server the steps log to and the registry is on."""
    credentials_secret: Name | None = None
    """Secret (under `secrets`) holding the tracking token, if any."""


# A store setting: a scalar, or a map of strings (Spark's `spark_conf`).
StoreOption = str | int | float | bool | dict[str, str]


class OnlineStore(Spec):
    type: Literal["sqlite", "redis", "postgres", "dynamodb", "bigtable", "datastore",
                  "snowflake"] = "sqlite"
    """Feast online store that serving reads features from."""
    path: str = Field("data/online_store.db", description="sqlite only.")
    connection_secret: Name | None = Field(None, description="Connection string, by reference.")
    options: dict[str, StoreOption] = Field(
        default_factory=dict, description="Further settings of the Feast online store, as "
        "feature_store.yaml names them (e.g. `region`, `host`, `database`); never credentials.")


class OfflineStore(Spec):
    type: Literal["file", "bigquery", "snowflake", "redshift", "spark", "postgres"] = "file"
    """Feast offline store that training reads features from."""
    connection_secret: Name | None = None
    """Secret (under `secrets`) holding the connection settings."""
    options: dict[str, StoreOption] = Field(
        default_factory=dict, description="Further settings of the Feast offline store, as "
        "feature_store.yaml names them (e.g. `account`, `warehouse`, `database`, `region`, "
        "`iam_role`, `spark_conf`); never credentials: those come from `connectionSecret`.")


class FeatureStore(Spec):
    provider: Literal["local", "gcp", "aws"] = "local"
    """Feast provider: `local`, `gcp` or `aws`."""
    registry: str = Field("data/registry.db", min_length=1,
                          description="Registry path or URI (s3://, gs://, or a SQL URL secret).")
    online_store: OnlineStore = Field(default_factory=OnlineStore)
    """Where online features are kept for serving."""
    offline_store: OfflineStore = Field(default_factory=OfflineStore)
    """Where historical features are read for training."""


# The default repository: a placeholder that only a development environment may keep.
PLACEHOLDER_REPO_URL = "https://github.com/example/ml-platform.git"
# Knative's `config-features` flags that allow the pod fields a hardware profile may need,
# and the init container that fetches a serving engine's model; all "disabled" in a default
# Knative install.
KnativeFeature = Literal["kubernetes.podspec-nodeselector", "kubernetes.podspec-tolerations",
                         "kubernetes.podspec-priorityclassname",
                         "kubernetes.podspec-init-containers"]


class Knative(Spec):
    features: list[KnativeFeature] = Field(
        default_factory=list, description="Knative feature flags enabled in the cluster "
        "(`config-features` in knative-serving); serverless endpoints on hardware profiles "
        "with node selectors, tolerations or a priority class need them, and serverless "
        "endpoints of a serving engine (`mlserver`, `triton`, `torchserve`) the init "
        "containers.")


class ArgoCd(Spec):
    repo_url: str = Field(PLACEHOLDER_REPO_URL, min_length=1,
                          description="The git repository Argo CD syncs the compiled tree from.")
    target_revision: str = "main"
    """Branch, tag or commit Argo CD syncs."""
    path: str = Field("deploy", description="Where the compiled tree lives in the repository.")
    project: DnsLabel = "default"
    """Argo CD project of the Application."""
    namespace: DnsLabel = "argocd"
    """Namespace Argo CD runs in."""
    server: str = "https://kubernetes.default.svc"
    """Cluster API server the Application deploys to."""


class Katib(Spec):
    """Katib, installed in the cluster: each model's `training.search` runs as a Katib
    Experiment (docs/lifecycle.md, "With Katib") instead of Argo tasks."""

    namespace: DnsLabel = "kubeflow"
    """Where Katib runs: its DB manager (`katib-db-manager:6789`) takes the metrics that the
    trials' collectors send."""
def _prometheus_pod_labels() -> dict[str, str]:  # a named default: see _any_address
    return {"app.kubernetes.io/name": "prometheus"}


class Prometheus(Spec):
    url: str = Field("http://prometheus-operated.monitoring.svc:9090", min_length=1,
                     description="The Prometheus that rollout gates query (Argo Rollouts' "
                     "AnalysisTemplates).")
    namespace: DnsLabel = Field("monitoring", description="Namespace of the Prometheus pods "
                                "that scrape the serving pods; NetworkPolicies let them in.")
    pod_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=_prometheus_pod_labels,
        description="Labels of those Prometheus pods.")


def _check_cidr(cidr: str) -> str:
    """Kubernetes refuses a NetworkPolicy whose ipBlock is not a network address."""
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError as e:
        raise PydanticCustomError("mlc_cidr", "`{cidr}` is not a CIDR: {reason}",
                                  {"cidr": cidr, "reason": str(e)}) from None
    return cidr


Cidr = Annotated[str, AfterValidator(_check_cidr)]


class PodPeer(Spec):
    namespace: DnsLabel = Field(description="The pods' namespace.")
    pod_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="Labels of the pods; none: every pod there.")


class EgressRule(Spec):
    """A destination that ml.yaml cannot name: an online store whose address is in a secret,
    a database, a proxy. Every pipeline step and model server may connect to it."""

    cidr: Cidr | None = Field(
        None, description="An IP range outside the cluster, e.g. 10.2.0.0/16.")
    namespace: DnsLabel | None = Field(None, description="Or pods of this namespace.")
    pod_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="With `namespace`: only pods with these labels.")
    ports: list[int] = Field(min_length=1, description="TCP ports.")

    @model_validator(mode="after")
    def _one(self):
        if (self.cidr is None) == (self.namespace is None):
            raise PydanticCustomError("mlc_one_of", "an egress rule has exactly one of "
                                      "`cidr` and `namespace`", {})
        if self.pod_labels and self.namespace is None:
            raise PydanticCustomError("mlc_one_of", "`podLabels` needs `namespace`", {})
        if any(not 1 <= port <= 65535 for port in self.ports):
            raise PydanticCustomError("mlc_port", "ports are 1-65535", {})
        return self


# Defaults as named functions, not lambdas, so that the built schema can be stored
# (model_cache.py).
def _any_address() -> list[str]:
    return ["0.0.0.0/0"]


def _cluster_dns() -> PodPeer:
    return PodPeer.model_validate({"namespace": "kube-system",
                                   "podLabels": {"k8s-app": "kube-dns"}})


def _alertmanager() -> PodPeer:
    return PodPeer.model_validate({"namespace": "monitoring",
                                   "podLabels": {"app.kubernetes.io/name": "alertmanager"}})


class Network(Spec):
    """Who the environment's pods talk to, for its NetworkPolicies (deny all but these)."""

    egress: list[EgressRule] = Field(
        default_factory=list, description="Further destinations of steps and model servers.")
    kubernetes_api: list[Cidr] = Field(
        default_factory=_any_address, min_length=1,
        description="IP ranges of the Kubernetes API server (ports 443 and 6443), which Argo's "
        "executor, JobSet steps, delivery and the Sensor call. The default allows any.")
    dns: PodPeer = Field(default_factory=_cluster_dns,
        description="The cluster DNS pods.")
    knative_namespace: DnsLabel = Field(
        "knative-serving", description="Knative's namespace: its activator and autoscaler "
        "connect to serverless pods.")
    gateway_namespace: DnsLabel = Field(
        "istio-system", description="The ingress gateway's namespace (Knative, KServe).")
    alertmanager: PodPeer = Field(default_factory=_alertmanager,
        description="The Alertmanager pods that call the drift webhook.")


class SecretStore(Spec):
    """The External Secrets Operator store that `external:` secrets are read from."""

    name: DnsLabel
    """Name of the store."""
    kind: Literal["ClusterSecretStore", "SecretStore"] = Field(
        "ClusterSecretStore", description="`SecretStore` only where one exists in the "
        "environment's namespace already (mlc creates the namespace, not the store).")


class Gateway(Spec):
    """The Gateway (Gateway API) that routes clients to this environment's endpoints.

    With one, an online endpoint gets an HTTPRoute attached to it: the gateway then mirrors
    a shadow's share of requests (a RequestMirror filter) and splits A/B traffic by weight,
    instead of the primary server and a pod ratio.
    """

    api: Literal["gateway-api"] = Field(
        description="`gateway-api`: gateway.networking.k8s.io/v1 HTTPRoutes (Istio, Envoy "
        "Gateway, Cilium and others implement it).")
    name: DnsLabel = Field(description="The Gateway object's name.")
    namespace: DnsLabel | None = Field(None, description="The Gateway's namespace; defaults "
                                       "to the environment's.")
    section_name: DnsLabel | None = Field(None, description="One listener of the Gateway; "
                                          "default: every listener that admits the route.")


class RunVolume(Spec):
    """The volume that the steps of one pipeline run share (data snapshot, model, metrics)."""

    size: MemoryQuantity = "10Gi"
    """Size of the volume."""
    storage_class: DnsLabel | None = Field(None, description="Defaults to the cluster's.")
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = Field(
        "ReadWriteOnce", description="`ReadWriteMany` where training runs on several nodes.")


class Platform(Spec):
    namespace: ProjectNamespace | None = Field(None, description="Defaults to "
                                               "`<project>-<env>`.")
    development: bool | None = Field(
        None, description="`true` allows settings that only work on one machine or a "
        "throw-away cluster (local file paths, SQLite, the placeholder Argo CD repository). "
        "Unset: true for a project without environments/, false for each environment file.")
    production: bool | None = Field(
        None, description="`true` turns on the built-in policies (docs/policies.md). Unset: "
        "true for an environment named `prod` or `production` that is not development.")
    guardrails: Guardrails = Field(default_factory=Guardrails)
    """Limits the built-in policies check in production."""
    cost: Cost = Field(default_factory=Cost)
    """Prices and budget for the plan's cost estimate."""
    image_policy: Literal["digest", "tag"] = Field(
        "digest", description="`digest` refuses mutable tags; allow `tag` only in dev.")
    gpu_node_provisioning: Literal["static", "autoscaled"] = Field(
        "static", description="`autoscaled` when GPU nodes are created on demand (slow start).")
    service_account: DnsLabel | None = Field(None, description="Defaults to `<project>-workflow`.")
    artifact_root: str = Field("s3://mlc-artifacts", min_length=1,
                               description="Where data snapshots, reports and prediction logs go.")
    mlflow: Mlflow = Field(default_factory=Mlflow)
    """The MLflow tracking server and model registry."""
    feature_store: FeatureStore = Field(default_factory=FeatureStore)
    """The Feast feature store: registry, online and offline stores."""
    argocd: ArgoCd = Field(default_factory=ArgoCd)
    """How Argo CD syncs the compiled tree to the cluster."""
    knative: Knative = Field(default_factory=Knative)
    """What the cluster's Knative allows, for serverless endpoints."""
    run_volume: RunVolume = Field(default_factory=RunVolume)
    """The volume the steps of one pipeline run share."""
    prometheus: Prometheus = Field(default_factory=Prometheus)
    """The Prometheus that scrapes the endpoints and answers rollout gates."""
    network: Network = Field(default_factory=Network)
    """Who the pods may talk to, for the NetworkPolicies."""
    secret_store: SecretStore | None = Field(
        None, description="Where `external:` secrets come from; required when there are any.")
    gateway: Gateway | None = None
    """A Gateway API gateway in front of the endpoints; unset: Services only."""
    lineage: Lineage | None = None
    """Where every pipeline step sends OpenLineage run events; unset: none are sent."""
    katib: Katib | None = None
    """Katib is installed: searches run as Katib Experiments; unset: as Argo tasks."""
    keda: Keda | None = None
    """KEDA is installed: stream endpoints scale on their consumer group's lag; unset: they
    run a fixed number of replicas."""
    pushgateway_url: str | None = Field(
        None, pattern=r"^https?://\S+$",
        examples=["http://prometheus-pushgateway.monitoring.svc:9091"],
        description="Where drift checks push their metrics; "
        "defaults to `http://prometheus-pushgateway.<namespace>.svc:9091`, the Pushgateway "
        "that the generated ServiceMonitor scrapes.")
