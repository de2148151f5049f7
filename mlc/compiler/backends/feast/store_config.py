"""feature_store.yaml: the project, registry, online store and offline store of one environment.

Credentials appear only as `${VAR}` references. Feast expands environment variables in this
file (`os.path.expandvars` over the whole text, before it parses the YAML), and the pipeline
steps that run Feast get the store secrets as the variables named here (see
`resolve/pipelines.py::_platform_secrets`). Because the value is pasted into the YAML text
before parsing, a secret must read back as a plain YAML scalar; a runtime that cannot promise
that exports the variable JSON-quoted, which YAML reads as the same string.

Relative local paths in ml.yaml (a file registry, the SQLite database) are relative to the
project root, which the runtime names in `MLC_DATA_ROOT` (see `__init__.py`).
"""

from __future__ import annotations

import re
from typing import Any

from ...ir import Platform, ResolvedProject
from ...names import python_identifier

DATA_ROOT_ENV = "MLC_DATA_ROOT"
ONLINE_SECRET_ENV = "MLC_ONLINE_STORE_CONNECTION"
OFFLINE_SECRET_ENV = "MLC_OFFLINE_STORE_CONNECTION"
# The current scheme; versions below 3 are deprecated since Feast 0.38.
ENTITY_KEY_SERIALIZATION_VERSION = 3

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

# ml.yaml store type -> Feast's `type`, and the setting the connection secret fills. Stores
# that authenticate through the cloud identity of the pod (IAM, workload identity) have none.
ONLINE_STORES = {
    "sqlite": ("sqlite", None),
    "redis": ("redis", "connection_string"),
    "postgres": ("postgres", "password"),
    "dynamodb": ("dynamodb", None),
    "bigtable": ("bigtable", None),
    "datastore": ("datastore", None),
    "snowflake": ("snowflake.online", "password"),
}
OFFLINE_STORES = {
    "file": ("file", None),
    "bigquery": ("bigquery", None),
    "snowflake": ("snowflake.offline", "password"),
    "redshift": ("redshift", None),
    "spark": ("spark", None),
    "postgres": ("postgres", "password"),
}
# Registry URIs that Feast's file registry reads; SQLAlchemy URLs go to the SQL registry.
_FILE_REGISTRY_SCHEMES = ("s3", "gs", "file")


def feast_project(project: ResolvedProject) -> str:
    """Feast's project name: one per environment, so that environments sharing a registry
    or an online store keep apart. Underscores only: SQLite table names refuse hyphens."""
    return python_identifier(f"{project.name}_{project.env}".replace("-", "_"))


def is_local_relative(path: str) -> bool:
    return not path.startswith("/") and not _URI.match(path)


def data_root_path(path: str) -> str:
    """A path from ml.yaml as feature_store.yaml writes it: relative ones under the data root."""
    if not is_local_relative(path):
        return path
    return f"${{{DATA_ROOT_ENV}}}/{path.removeprefix('./')}"


def store_config(project: ResolvedProject) -> dict[str, Any]:
    p = project.platform
    return {
        "project": feast_project(project),
        "provider": p.feast_provider,
        "registry": _registry(p),
        "online_store": _online_store(p),
        "offline_store": _offline_store(p),
        "entity_key_serialization_version": ENTITY_KEY_SERIALIZATION_VERSION,
    }


def _registry(p: Platform) -> dict[str, Any]:
    scheme = _URI.match(p.feast_registry)
    if scheme and scheme.group(0)[:-3].lower() not in _FILE_REGISTRY_SCHEMES:
        return {"registry_type": "sql", "path": p.feast_registry}
    return {"registry_type": "file", "path": data_root_path(p.feast_registry)}


def _online_store(p: Platform) -> dict[str, Any]:
    feast_type, secret_setting = ONLINE_STORES[p.online_store_type]
    # ml.yaml's own settings first: what mlc sets (type, path, the secret) must win, and
    # resolve refuses options that would collide with it.
    config: dict[str, Any] = dict(p.online_store_options)
    config["type"] = feast_type
    if p.online_store_type == "sqlite":
        config["path"] = data_root_path(p.online_store_path)
    if secret_setting and p.online_store_secret:
        config[secret_setting] = f"${{{ONLINE_SECRET_ENV}}}"
    return config


def _offline_store(p: Platform) -> dict[str, Any]:
    feast_type, secret_setting = OFFLINE_STORES[p.offline_store_type]
    config: dict[str, Any] = dict(p.offline_store_options)
    config["type"] = feast_type
    if secret_setting and p.offline_store_secret:
        config[secret_setting] = f"${{{OFFLINE_SECRET_ENV}}}"
    return config

