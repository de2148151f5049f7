"""`platform.lineage`: the transport of the steps' OpenLineage events, its secret followed."""

from __future__ import annotations

from ...schema.lineage import FileLineage, HttpLineage, KafkaLineage
from ...step_contract import LINEAGE_API_KEY_ENV
from .. import ir
from .context import Context

# The step runtime reads the HTTP transport's token from this variable (a secretKeyRef).
API_KEY_ENV = LINEAGE_API_KEY_ENV


def resolve_lineage(ctx: Context, secrets: dict[str, ir.SecretRef]) -> ir.Lineage | None:
    lineage = ctx.project.platform.lineage
    if lineage is None:
        return None
    namespace = lineage.namespace or f"mlc.{ctx.project.metadata.name}"
    if isinstance(lineage, HttpLineage):
        key = lineage.api_key_secret
        found = key is not None and ctx.check_ref(key, secrets, "secret",
                                                  ("platform", "lineage", "apiKeySecret"),
                                                  "secrets")
        return ir.Lineage(transport="http", namespace=namespace, url=lineage.url.rstrip("/"),
                          endpoint=lineage.endpoint.strip("/"),
                          api_key=secrets[key] if found else None)
    if isinstance(lineage, FileLineage):
        return ir.Lineage(transport="file", namespace=namespace, path=lineage.path)
    assert isinstance(lineage, KafkaLineage)
    return ir.Lineage(transport="kafka", namespace=namespace,
                      bootstrap_servers=lineage.bootstrap_servers, topic=lineage.topic)
