"""The environment's foundation: its Namespace and the runtime configuration.

`project.json` is the resolved project (the IR), which every runtime step and server reads;
it is mounted from the ConfigMap emitted here.
"""

from __future__ import annotations

from ..ir import ResolvedProject
from ..names import dns_label
from ..output import OutputFile
from .objects import metadata


def config_map_name(project: ResolvedProject) -> str:
    return dns_label(project.name, "config")


def runtime_config(project: ResolvedProject) -> str:
    return project.model_dump_json(indent=2) + "\n"


# Katib injects its metrics collector into the trial pods of namespaces labelled so
KATIB_INJECTION = {"katib.kubeflow.org/metrics-collector-injection": "enabled"}


def emit(project: ResolvedProject) -> list[OutputFile]:
    katib = any(m.training.search is not None and m.training.search.engine == "katib"
                for m in project.models.values())
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(project, project.platform.namespace, namespaced=False,
                             extra_labels={
                                 # the restricted Pod Security Standard: the pods we emit meet it
                                 "pod-security.kubernetes.io/enforce": "restricted",
                                 "pod-security.kubernetes.io/enforce-version": "latest",
                                 **(KATIB_INJECTION if katib else {}),
                             }),
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(project, config_map_name(project), component="config"),
        "data": {"project.json": runtime_config(project)},
    }
    return [OutputFile("core/namespace.yaml", namespace, project.source),
            OutputFile("core/config.yaml", config, project.source)]
