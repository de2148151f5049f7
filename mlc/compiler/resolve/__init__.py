"""resolve: the validated project -> the IR of one environment.

Order matters: names and secrets first, because everything else refers to them; then the
data layer (sources -> entities -> feature views -> services) that models read; then models,
the endpoints that serve them, and the monitoring that watches both; the pipeline graph
last, since its steps need every one of those final.
"""

from __future__ import annotations

from ...schema import Project
from .. import ir
from ..diagnostics import Diagnostics
from ..load import Document
from ..names import dns_label
from .cluster_safety import check_cluster_safety
from .context import NAME_CLASH, Context
from .datasets import check_consumers as check_dataset_consumers
from .engines import check_log_readers
from .exports import add_exports, model_exports
from .features import (
    check_feast_support,
    check_source_cycles,
    resolve_entities,
    resolve_feature_services,
    resolve_feature_views,
    resolve_sources,
)
from .governance import check_expected_durations, cost_labels, resolve_accepted_risks
from .models import resolve_models
from .monitoring import resolve_alerts, resolve_drift_checks, resolve_routes
from .network import check_network
from .pipelines import PROJECT_JSON, resolve_pipelines
from .platform import (
    check_endpoint_shared_memory,
    resolve_hardware,
    resolve_images,
    resolve_platform,
    resolve_secrets,
)
from .quality import resolve_quality_monitors
from .readers import check_step_sources
from .serving import resolve_endpoints
from .streams import resolve_ingestions
from .triggers import add_reason_parameters, resolve_event_triggers
from .upstream import add_upstream_waits
from .vectors import resolve_score_vector_writes, resolve_vector_stores, resolve_vector_writes
from .workflows import check_workflows

__all__ = ["PROJECT_JSON", "resolve_project"]


def resolve_project(project: Project, doc: Document, *, env: str, environments: list[str],
                    source: str, source_hash: str, diags: Diagnostics,
                    layered: bool = True) -> ir.ResolvedProject | None:
    """`layered`: the environment has an overlay file; one without is development by default."""
    development = project.platform.development
    ctx = Context(project=project, doc=doc, env=env, diags=diags,
                  development=(not layered) if development is None else development)
    _check_name_clashes(ctx)
    check_source_cycles(ctx)
    images = resolve_images(ctx)
    hardware = resolve_hardware(ctx)
    secrets = resolve_secrets(ctx)
    platform = resolve_platform(ctx, secrets)
    sources = resolve_sources(ctx)
    entities = resolve_entities(ctx)
    views = resolve_feature_views(ctx, sources, entities)
    check_feast_support(ctx, platform, sources, views)
    services = resolve_feature_services(ctx, views)
    ingestions = resolve_ingestions(ctx, views, secrets, hardware, images)
    vector_stores = resolve_vector_stores(ctx, secrets)
    vector_writes = resolve_vector_writes(ctx, views, sources, entities, vector_stores)
    models, synthesized = resolve_models(ctx, views, services, sources, hardware, images,
                                         secrets)
    services = dict(sorted({**services, **synthesized}.items()))
    endpoints = resolve_endpoints(ctx, models, hardware, images, views, sources, platform,
                                  secrets)
    check_dataset_consumers(ctx, models)  # what would read a dataset model's features
    check_endpoint_shared_memory(ctx, hardware)
    endpoints = check_log_readers(ctx, endpoints)  # an engine's log: its payload receiver
    vector_writes |= resolve_score_vector_writes(ctx, endpoints, models, sources, entities,
                                                 vector_stores)
    routes = resolve_routes(ctx, secrets)
    alerts = resolve_alerts(ctx, routes, secrets)
    checks = resolve_drift_checks(ctx, models, endpoints, sources, routes)
    quality = resolve_quality_monitors(ctx, endpoints, models, sources, routes)
    check_step_sources(ctx, platform, sources, models, endpoints, checks, quality)
    pipelines = resolve_pipelines(ctx, models, checks, endpoints, views, images, platform,
                                  quality, vector_writes)
    pipelines = add_upstream_waits(pipelines, models, views, sources)
    pipelines = add_exports(pipelines, model_exports(ctx, models, endpoints))
    triggers = resolve_event_triggers(ctx, models, endpoints, pipelines, secrets)
    pipelines = add_reason_parameters(pipelines, triggers)
    check_workflows(ctx)
    check_cluster_safety(ctx, platform, views, endpoints)
    check_network(ctx, platform)
    accepted = resolve_accepted_risks(ctx)
    check_expected_durations(ctx)
    if diags.has_errors():
        return None
    meta = project.metadata
    labels = {
        "app.kubernetes.io/managed-by": "mlc",
        "app.kubernetes.io/part-of": meta.name,
        "app.kubernetes.io/version": meta.version,
        "mlc.dev/environment": env,
    }
    if meta.team:
        labels["mlc.dev/team"] = meta.team
    labels.update(cost_labels(ctx, platform))
    labels = dict(sorted({**meta.labels, **labels}.items()))
    return ir.ResolvedProject(
        name=meta.name, version=meta.version, env=env, environments=sorted(environments),
        team=meta.team, owners=list(meta.owners), description=meta.description, source=source,
        source_hash=source_hash, labels=labels, platform=platform, images=images,
        hardware=hardware, secrets=secrets, sources=sources, entities=entities,
        feature_views=views, feature_services=services, models=models, endpoints=endpoints,
        drift_checks=checks, routes=routes, alerts=alerts, pipelines=pipelines,
        quality_monitors=quality,
        accepted_risks=accepted, ingestions=ingestions, event_triggers=triggers,
        vector_writes=vector_writes)


def _check_name_clashes(ctx: Context) -> None:
    """Two user names that map to one Kubernetes name would overwrite each other's objects."""
    p = ctx.project
    for section, names in (("models", p.models), ("serving", p.serving),
                           ("monitoring.drift", p.monitoring.drift),
                           ("monitoring.quality", p.monitoring.quality), ("features", p.features),
                           ("secrets", p.secrets)):
        seen: dict[str, str] = {}
        for name in sorted(names):
            k8s = dns_label(name)
            if k8s in seen:
                path = tuple(section.split(".")) + (name,)
                ctx.error(NAME_CLASH, f"`{name}` and `{seen[k8s]}` both become the Kubernetes "
                          f"name `{k8s}`", path, help="rename one of them")
            seen[k8s] = name
