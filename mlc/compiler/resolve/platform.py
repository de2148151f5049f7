"""Images, hardware profiles, secrets and platform settings, in Kubernetes terms."""

from __future__ import annotations

import re

from ...schema.hardware import HardwareProfile
from ...schema.types import IMAGE_RE, quantity_value
from .. import ir
from ..literal_secrets import LITERAL_SECRET
from ..names import dns_label
from .context import Context
from .governance import production_settings
from .lineage import resolve_lineage

IMAGE_NOT_PINNED = "MLC304"
# The default profile that jobs and endpoints get when they name none.
DEFAULT_PROFILE = HardwareProfile.model_validate({}, strict=True)
# Labels and taints the profiles map to; documented in docs/language.md#hardware.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
SPOT_LABEL = "karpenter.sh/capacity-type"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def resolve_image(ctx: Context, ref: str, path) -> ir.Image:
    m = IMAGE_RE.fullmatch(ref)
    assert m  # validated by the schema
    image = ir.Image(ref=ref, repository=m.group("repo"), tag=m.group("tag"),
                     digest=m.group("digest"))
    policy = ctx.project.platform.image_policy
    if policy == "digest" and image.digest is None:
        ctx.error(IMAGE_NOT_PINNED,
                  f"image `{ref}` is not pinned by digest, and environment `{ctx.env}` requires "
                  "digests (platform.imagePolicy: digest)", path,
                  help="append `@sha256:<digest>` to the reference, or set "
                  "`platform: {imagePolicy: tag}` in a development environment's overlay")
    return image


def resolve_images(ctx: Context) -> dict[str, ir.Image]:
    images = ctx.project.images
    out = {role: resolve_image(ctx, getattr(images, role), ("images", role))
           for role in ("train", "serve", "drift")}
    for name in sorted(images.custom):
        out[f"custom/{name}"] = resolve_image(ctx, images.custom[name], ("images", "custom", name))
    return out



def resolve_hardware(ctx: Context) -> dict[str, ir.Hardware]:
    profiles = dict(ctx.project.hardware)
    profiles.setdefault("default", DEFAULT_PROFILE)
    out = {}
    for name in sorted(profiles):
        p = profiles[name]
        requests = {"cpu": str(p.cpu), "memory": str(p.memory)}
        if p.ephemeral_storage:
            requests["ephemeral-storage"] = str(p.ephemeral_storage)
        limits = dict(requests)
        if p.cpu_limit is not None:
            if quantity_value(str(p.cpu_limit)) < quantity_value(str(p.cpu)):
                ctx.error("MLC111", f"cpuLimit `{p.cpu_limit}` is below the request `{p.cpu}`",
                          ("hardware", name, "cpuLimit"), help="raise cpuLimit or lower cpu")
            limits["cpu"] = str(p.cpu_limit)
        node_selector = dict(p.node_selector)
        tolerations = [ir.Toleration(key=t.key, operator=t.operator, value=t.value,
                                     effect=t.effect) for t in p.tolerations]
        gpu_resource = None
        if p.gpu:
            gpu_resource = f"nvidia.com/mig-{p.gpu.mig}" if p.gpu.mig else "nvidia.com/gpu"
            requests[gpu_resource] = limits[gpu_resource] = str(p.gpu.count)
            if not p.gpu.mig:
                node_selector.setdefault(GPU_PRODUCT_LABEL, p.gpu.type)
            tolerations.append(ir.Toleration(key="nvidia.com/gpu", operator="Exists", value=None,
                                             effect="NoSchedule"))
        extended = _extended_resources(ctx, name, p)
        requests.update(extended)
        limits.update(extended)
        _check_shared_memory(ctx, name, p)
        if p.spot:
            node_selector.setdefault(SPOT_LABEL, "spot")
            tolerations.append(ir.Toleration(key=SPOT_LABEL, operator="Equal", value="spot",
                                             effect="NoSchedule"))
        out[name] = ir.Hardware(
            name=name, requests=requests, limits=limits, gpu_resource=gpu_resource,
            gpu_count=p.gpu.count if p.gpu else 0, gpu_type=p.gpu.type if p.gpu else None,
            node_selector=dict(sorted(node_selector.items())), tolerations=tolerations,
            priority_class=p.priority_class, queue=p.queue, spot=p.spot,
            extended_resources=extended,
            shared_memory=str(p.shared_memory) if p.shared_memory is not None else None)
    return out


RESERVED_RESOURCE = "MLC588"
SHARED_MEMORY_TOO_LARGE = "MLC589"
SHARED_MEMORY_NOT_SERVED = "MLC594"
# the resources that the profile's other fields request, and Kubernetes' own domains
_NATIVE_DOMAINS = ("kubernetes.io", "k8s.io")


def _extended_resources(ctx: Context, name: str, p) -> dict[str, str]:
    """`extendedResources`, requested and limited alike (Kubernetes requires both equal and
    whole for them), sorted by name; GPUs and native resources are refused here."""
    out = {}
    for resource in sorted(p.extended_resources):
        domain = resource.partition("/")[0]
        where = ("hardware", name, "extendedResources", resource)
        if resource == "nvidia.com/gpu" or resource.startswith("nvidia.com/mig-"):
            ctx.error(RESERVED_RESOURCE, f"hardware profile `{name}` lists `{resource}` as an "
                      "extended resource: GPUs are requested by `gpu`, which also selects "
                      "their nodes and tolerates their taint", where,
                      help="use `gpu: {type: ..., count: N}` (or `mig:`) instead")
            continue
        if any(domain == d or domain.endswith("." + d) for d in _NATIVE_DOMAINS):
            ctx.error(RESERVED_RESOURCE, f"hardware profile `{name}` lists `{resource}`: the "
                      f"`{domain}` domain holds Kubernetes' own resources, which no device "
                      "plugin advertises", where,
                      help="name the device plugin's resource (e.g. `vpc.amazonaws.com/efa`), "
                      "or use `cpu`, `memory`, `ephemeralStorage`")
            continue
        out[resource] = str(p.extended_resources[resource])
    return out


def _check_shared_memory(ctx: Context, name: str, p) -> None:
    """/dev/shm is memory-backed: what is written there counts against the pod's memory
    limit, so a size at or above it is never reached (the pod is killed first)."""
    if p.shared_memory is None:
        return
    if quantity_value(str(p.shared_memory)) >= quantity_value(str(p.memory)):
        ctx.error(SHARED_MEMORY_TOO_LARGE, f"hardware profile `{name}` gives /dev/shm "
                  f"`{p.shared_memory}`, but the pod's memory limit is `{p.memory}` and "
                  "shared memory counts against it: the pod would be killed before /dev/shm "
                  "is full", ("hardware", name, "sharedMemory"),
                  help="lower `sharedMemory` below `memory` (e.g. half of it), or raise "
                  "`memory`")


def check_endpoint_shared_memory(ctx: Context, hardware: dict[str, ir.Hardware]) -> None:
    """Online and serverless endpoints' pods mount /dev/shm of their profile; the scoring
    pods of batch and stream endpoints do not yet: refused rather than ignored."""
    for name in sorted(ctx.project.serving):
        e = ctx.project.serving[name]
        profile = hardware.get(e.hardware)
        if e.mode in ("batch", "stream") and profile is not None \
                and profile.shared_memory is not None:
            ctx.error(SHARED_MEMORY_NOT_SERVED, f"endpoint `{name}` is `mode: {e.mode}` on "
                      f"hardware profile `{e.hardware}`, whose `sharedMemory` its scoring "
                      "pods do not mount", ("serving", name, "hardware"),
                      help="give the endpoint a profile without `sharedMemory` (online and "
                      "serverless endpoints' pods and training pods do mount it)")


NO_SECRET_STORE = "MLC220"
SECRET_NAME_TAKEN = "MLC222"


def resolve_secrets(ctx: Context) -> dict[str, ir.SecretRef]:
    """Every declared secret as the Secret a pod reads: `kubernetes:` ones exist already;
    `external:` ones are synced by an ExternalSecret into a Secret named after the project."""
    out = {}
    prefix = ctx.project.metadata.name
    store = ctx.project.platform.secret_store
    for name in sorted(ctx.project.secrets):
        s = ctx.project.secrets[name]
        if s.kubernetes:
            out[name] = ir.SecretRef(name=name, k8s_name=s.kubernetes.name, key=s.kubernetes.key,
                                     external_store=None, external_path=None, external_key=None,
                                     origin=ctx.origin(("secrets", name)))
            continue
        assert s.external
        store_name = s.external.store or (store.name if store else None)
        if store_name is None:
            ctx.error(NO_SECRET_STORE, f"external secret `{name}` names no secret store, and "
                      "`platform.secretStore` is not set", ("secrets", name, "external"),
                      help="set `platform: {secretStore: {name: <store>, kind: "
                      "ClusterSecretStore}}` (in ml.yaml or the environment's overlay), or "
                      "`store:` on the secret")
        out[name] = ir.SecretRef(
            name=name, k8s_name=dns_label(prefix, name), key=s.external.key or "value",
            external_store=store_name, external_path=s.external.path,
            external_key=s.external.key,
            external_store_kind=store.kind if store else "ClusterSecretStore",
            origin=ctx.origin(("secrets", name)))
    synced = {ref.k8s_name: name for name, ref in out.items() if ref.external_store}
    for name, ref in out.items():
        if ref.external_store is None and ref.k8s_name in synced:
            ctx.error(SECRET_NAME_TAKEN, f"secret `{name}` names the Kubernetes Secret "
                      f"`{ref.k8s_name}`, which the ExternalSecret of `{synced[ref.k8s_name]}` "
                      "creates and owns", ("secrets", name, "kubernetes", "name"),
                      help="point it at another Secret, or rename the external secret")
    return out


def secret_ref(ctx: Context, secrets: dict[str, ir.SecretRef], name: str | None,
               path) -> ir.SecretRef | None:
    if name is None:
        return None
    if ctx.check_ref(name, secrets, "secret", path, "secrets"):
        return secrets[name]
    return None


BAD_STORE_OPTION = "MLC210"
# Settings that mlc writes itself (`type`, the SQLite `path`) or that hold credentials, which
# come only from `connectionSecret`.
_RESERVED_STORE_OPTIONS = frozenset({"type", "path", "password", "connection_string",
                                     "private_key", "private_key_content",
                                     "private_key_passphrase", "credentials"})
_STORE_OPTION_KEY = re.compile(r"[a-z][a-z0-9_]*")


def store_options(ctx: Context, options: dict, path) -> dict:
    """A Feast store's extra settings, sorted, after refusing what feature_store.yaml cannot
    take from ml.yaml: reserved or malformed keys, and `$`, which Feast would expand."""
    for key in sorted(options):
        where = (*path, "options", key)
        if key in _RESERVED_STORE_OPTIONS:
            code = BAD_STORE_OPTION if key in ("type", "path") else LITERAL_SECRET
            ctx.error(code, f"`{key}` cannot be set in `options`", where,
                      help="mlc sets `type` and `path` itself; credentials come from "
                      "`connectionSecret`", redact=code == LITERAL_SECRET)
        elif not _STORE_OPTION_KEY.fullmatch(key):
            ctx.error(BAD_STORE_OPTION, f"`{key}` is not a feature_store.yaml setting name",
                      where, help="use the snake_case name Feast documents, e.g. `iam_role`")
        value = options[key]
        texts = value.values() if isinstance(value, dict) else [value]
        if any(isinstance(text, str) and "$" in text for text in texts):
            ctx.error(BAD_STORE_OPTION, f"`{key}` contains `$`, which Feast would read as an "
                      "environment variable", where,
                      help="write the value without `$`; pass secrets by `connectionSecret`")
    return {k: (dict(sorted(v.items())) if isinstance(v, dict) else v)
            for k, v in sorted(options.items())}


def offline_store_type(ctx: Context) -> str:
    """The offline store: as ml.yaml names it, or else the kind of table the feature views
    read (Feast joins a view's data in the offline store, which reads only its own kind)."""
    store = ctx.project.platform.feature_store.offline_store
    if "type" in store.model_fields_set:
        return store.type
    sources = ctx.project.sources
    kinds = set()
    for view in ctx.project.features.values():
        source = sources.get(view.source)
        batch = sources.get(getattr(source, "batch_source", None) or "") or source
        if batch is not None and batch.type in _BATCH_SOURCE_TYPES:
            kinds.add(batch.type)
    # a mixture has no store to serve it; check_feast_support reports it
    return kinds.pop() if len(kinds) == 1 else store.type


_BATCH_SOURCE_TYPES = ("file", "bigquery", "snowflake", "redshift", "spark", "postgres")


# Settings Feast (0.67) requires per store type; credentials come from the connection secret.
_REQUIRED_ONLINE = {"postgres": ("host", "database", "user"), "dynamodb": ("region",),
                    "bigtable": ("instance",), "snowflake": ("database",)}
_REQUIRED_OFFLINE = {"snowflake": ("database",), "redshift": ("region", "database", "iam_role"),
                     "postgres": ("host", "database", "user")}
_SECRET_NEEDED = {"postgres"}


def check_required_store_options(ctx: Context, fs, offline_type: str) -> None:
    """Warn now about settings that `feast apply` would ask for later."""
    for which, store, kind, table in (
            ("onlineStore", fs.online_store, fs.online_store.type, _REQUIRED_ONLINE),
            ("offlineStore", fs.offline_store, offline_type, _REQUIRED_OFFLINE)):
        missing = [f"`{k}`" for k in table.get(kind, ()) if k not in store.options]
        if missing:
            ctx.warning(BAD_STORE_OPTION, f"Feast's {kind} {which[:-5]} store needs "
                        f"{', '.join(missing)} in `options`", ("platform", "featureStore", which),
                        help=f"add them under `platform.featureStore.{which}.options`")
        if kind in _SECRET_NEEDED and store.connection_secret is None:
            ctx.warning(BAD_STORE_OPTION, f"Feast's {kind} {which[:-5]} store needs a password",
                        ("platform", "featureStore", which),
                        help="name the secret that holds it in `connectionSecret`")


def check_store_paths(ctx: Context, fs) -> None:
    """feature_store.yaml holds these verbatim, and Feast expands `$NAME` in that file."""
    for text, where in ((fs.registry, ("registry",)), (fs.online_store.path,
                                                       ("onlineStore", "path"))):
        if "$" in text:
            ctx.error(BAD_STORE_OPTION, f"`{text}` contains `$`, which Feast would read as an "
                      "environment variable", ("platform", "featureStore", *where),
                      help="write the path without `$`")


def resolve_platform(ctx: Context, secrets: dict[str, ir.SecretRef]) -> ir.Platform:
    p = ctx.project.platform
    name = ctx.project.metadata.name
    fs = p.feature_store
    check_store_paths(ctx, fs)
    check_required_store_options(ctx, fs, offline_store_type(ctx))
    return ir.Platform(
        namespace=p.namespace or dns_label(name, ctx.env),
        development=ctx.development,
        **production_settings(ctx),
        image_policy=p.image_policy,
        gpu_node_provisioning=p.gpu_node_provisioning,
        service_account=p.service_account or dns_label(name, "workflow"),
        artifact_root=p.artifact_root.rstrip("/"),
        mlflow_tracking_uri=p.mlflow.tracking_uri,
        mlflow_credentials=secret_ref(ctx, secrets, p.mlflow.credentials_secret,
                                      ("platform", "mlflow", "credentialsSecret")),
        feast_provider=fs.provider,
        feast_registry=fs.registry,
        online_store_type=fs.online_store.type,
        online_store_path=fs.online_store.path,
        online_store_secret=secret_ref(
            ctx, secrets, fs.online_store.connection_secret,
            ("platform", "featureStore", "onlineStore", "connectionSecret")),
        offline_store_type=offline_store_type(ctx),
        offline_store_secret=secret_ref(
            ctx, secrets, fs.offline_store.connection_secret,
            ("platform", "featureStore", "offlineStore", "connectionSecret")),
        online_store_options=store_options(
            ctx, fs.online_store.options, ("platform", "featureStore", "onlineStore")),
        offline_store_options=store_options(
            ctx, fs.offline_store.options, ("platform", "featureStore", "offlineStore")),
        argocd_repo_url=p.argocd.repo_url,
        argocd_target_revision=p.argocd.target_revision,
        argocd_path=p.argocd.path.strip("/"),
        argocd_project=p.argocd.project,
        argocd_namespace=p.argocd.namespace,
        argocd_server=p.argocd.server,
        run_volume_size=str(p.run_volume.size),
        run_volume_storage_class=p.run_volume.storage_class,
        run_volume_access_mode=p.run_volume.access_mode,
        prometheus_url=p.prometheus.url,
        prometheus_namespace=p.prometheus.namespace,
        prometheus_pod_labels=dict(sorted(p.prometheus.pod_labels.items())),
        network=_network(p.network),
        pushgateway_url=p.pushgateway_url or (
            f"http://prometheus-pushgateway.{p.namespace or dns_label(name, ctx.env)}.svc:9091"),
        gateway=ir.Gateway(api=p.gateway.api, name=p.gateway.name,
                           namespace=p.gateway.namespace or p.namespace or dns_label(name, ctx.env),
                           section_name=p.gateway.section_name) if p.gateway else None,
        lineage=resolve_lineage(ctx, secrets),
    )


def _network(n) -> ir.Network:
    def pods(peer, ports: list[int]) -> ir.NetworkPeer:
        return ir.NetworkPeer(namespace=peer.namespace, pod_labels=dict(sorted(
            peer.pod_labels.items())), cidr=None, ports=ports)
    return ir.Network(
        egress=[ir.NetworkPeer(namespace=e.namespace, pod_labels=dict(sorted(e.pod_labels.items())),
                               cidr=e.cidr, ports=sorted(set(e.ports))) for e in n.egress],
        kubernetes_api=list(n.kubernetes_api), dns=pods(n.dns, [53]),
        knative_namespace=n.knative_namespace, gateway_namespace=n.gateway_namespace,
        alertmanager=pods(n.alertmanager, []))
