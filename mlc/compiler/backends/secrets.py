"""External secrets: one ExternalSecret (External Secrets Operator, external-secrets.io/v1) per
`external:` secret of ml.yaml, which keeps a Secret in the namespace in step with the store.

The Secret's name and key are exactly the IR's SecretRef (`k8s_name`, `key`): the ones every
pod, volume and AlertmanagerConfig of the tree reads. The ExternalSecret owns that Secret
(deleted with it); it syncs in wave -1 (kustomize.py), before the workloads that mount it.
`kubernetes:` secrets are declared to exist already: nothing here creates them.
"""

from __future__ import annotations

from typing import Any

from ..ir import ResolvedProject, SecretRef
from ..output import OutputFile
from .objects import metadata

API_VERSION = "external-secrets.io/v1"
# How often the operator reads the store again: a rotated secret arrives within this long.
REFRESH_INTERVAL = "1h"


def external_secret(project: ResolvedProject, ref: SecretRef) -> dict[str, Any]:
    assert ref.external_store and ref.external_path
    remote: dict[str, Any] = {"key": ref.external_path}
    if ref.external_key:
        remote["property"] = ref.external_key
    return {
        "apiVersion": API_VERSION,
        "kind": "ExternalSecret",
        "metadata": metadata(project, ref.k8s_name, origin=ref.origin, component="secrets"),
        "spec": {
            "refreshInterval": REFRESH_INTERVAL,
            "secretStoreRef": {"name": ref.external_store,
                               "kind": ref.external_store_kind or "ClusterSecretStore"},
            "target": {"name": ref.k8s_name, "creationPolicy": "Owner",
                       "deletionPolicy": "Retain"},
            "data": [{"secretKey": ref.key, "remoteRef": remote}],
        },
    }


def emit(project: ResolvedProject) -> list[OutputFile]:
    refs = [ref for _, ref in sorted(project.secrets.items()) if ref.external_store]
    return [OutputFile(f"secrets/{ref.k8s_name}.yaml", external_secret(project, ref),
                       project.source) for ref in refs]
