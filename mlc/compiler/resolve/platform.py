"""Images, hardware profiles, secrets and platform settings, in Kubernetes terms."""

from __future__ import annotations

from ...schema.hardware import HardwareProfile
from ...schema.types import IMAGE_RE, quantity_value
from .. import ir
from ..names import dns_label
from .context import Context

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
        if p.spot:
            node_selector.setdefault(SPOT_LABEL, "spot")
            tolerations.append(ir.Toleration(key=SPOT_LABEL, operator="Equal", value="spot",
                                             effect="NoSchedule"))
        out[name] = ir.Hardware(
            name=name, requests=requests, limits=limits, gpu_resource=gpu_resource,
            gpu_count=p.gpu.count if p.gpu else 0, gpu_type=p.gpu.type if p.gpu else None,
            node_selector=dict(sorted(node_selector.items())), tolerations=tolerations,
            priority_class=p.priority_class, queue=p.queue, spot=p.spot)
    return out


def resolve_secrets(ctx: Context) -> dict[str, ir.SecretRef]:
    out = {}
    prefix = ctx.project.metadata.name
    for name in sorted(ctx.project.secrets):
        s = ctx.project.secrets[name]
        if s.kubernetes:
            out[name] = ir.SecretRef(name=name, k8s_name=s.kubernetes.name, key=s.kubernetes.key,
                                     external_store=None, external_path=None, external_key=None)
        else:
            assert s.external
            out[name] = ir.SecretRef(
                name=name, k8s_name=dns_label(prefix, name), key=s.external.key or "value",
                external_store=s.external.store, external_path=s.external.path,
                external_key=s.external.key)
    return out


def secret_ref(ctx: Context, secrets: dict[str, ir.SecretRef], name: str | None,
               path) -> ir.SecretRef | None:
    if name is None:
        return None
    if ctx.check_ref(name, secrets, "secret", path, "secrets"):
        return secrets[name]
    return None


def resolve_platform(ctx: Context, secrets: dict[str, ir.SecretRef]) -> ir.Platform:
    p = ctx.project.platform
    name = ctx.project.metadata.name
    fs = p.feature_store
    return ir.Platform(
        namespace=p.namespace or dns_label(name, ctx.env),
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
        offline_store_type=fs.offline_store.type,
        offline_store_secret=secret_ref(
            ctx, secrets, fs.offline_store.connection_secret,
            ("platform", "featureStore", "offlineStore", "connectionSecret")),
        argocd_repo_url=p.argocd.repo_url,
        argocd_target_revision=p.argocd.target_revision,
        argocd_path=p.argocd.path.strip("/"),
        argocd_project=p.argocd.project,
        argocd_namespace=p.argocd.namespace,
        argocd_server=p.argocd.server,
    )
