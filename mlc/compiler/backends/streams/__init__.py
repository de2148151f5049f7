"""The streams backend: a consumer Deployment per Kafka source that feeds online views.

    streams/deployment-<source>-ingest.yaml      `python -m mlc.runtime ingest`
    streams/serviceaccount-<source>-ingest.yaml  its identity, with no API token mounted
    streams/networkpolicy-<source>-ingest.yaml   brokers and the feature store out,
                                                 Prometheus in
    streams/podmonitor-<source>-ingest.yaml      scrape its metrics (mlc.metrics INGEST_*)

and a consumer Deployment per `mode: stream` endpoint, with its ScaledObject where the
platform declares KEDA (scoring.py).

Its lag and failure alerts are a rule set of the monitoring backend (ingest_rules.py), so
that the PrometheusRule, the promtool rule file and its unit tests come out together.
"""

from __future__ import annotations

from ...ir import ResolvedProject
from ...output import OutputFile
from . import scoring
from .ingest import deployment, network_policy, pod_monitor, service_account

__all__ = ["emit"]


def emit(project: ResolvedProject) -> list[OutputFile]:
    out = []
    for ingestion in project.ingestions.values():
        for build in (deployment, service_account, network_policy, pod_monitor):
            obj = build(project, ingestion)
            out.append(OutputFile(f"streams/{obj['kind'].lower()}-{ingestion.k8s_name}.yaml",
                                  obj, project.source))
    for name in sorted(project.endpoints):
        ep = project.endpoints[name]
        if ep.mode == "stream" and ep.stream is not None:
            for obj in scoring.objects(project, ep):
                out.append(OutputFile(
                    f"streams/{obj['kind'].lower()}-{scoring.k8s_name(ep)}.yaml", obj,
                    project.source))
    return out
