"""What the NetworkPolicies cannot allow by themselves: a store whose address only a secret
knows. Every pod's egress is denied but for the flows backends/network allows, so a Redis or
Postgres store (its host in `connectionSecret`) is reachable only through a destination the
user declares in `platform.network.egress`. Outside development, refuse an environment that
uses such a store and declares none, rather than compile pods that cannot reach it.
"""

from __future__ import annotations

from .. import ir
from .context import Context

UNDECLARED_STORE_ADDRESS = "MLC272"

# Store types whose address is a host of the user's (not a cloud API on HTTPS).
_ONLINE_ADDRESSED = frozenset({"redis", "postgres"})
_OFFLINE_ADDRESSED = frozenset({"postgres", "spark"})
_SOURCE_ADDRESSED = frozenset({"postgres", "spark", "kafka"})


def check_network(ctx: Context, platform: ir.Platform) -> None:
    if ctx.development or (platform.network and platform.network.egress):
        return
    for kind, store_type, addressed in (
            ("onlineStore", platform.online_store_type, _ONLINE_ADDRESSED),
            ("offlineStore", platform.offline_store_type, _OFFLINE_ADDRESSED)):
        if store_type in addressed:
            ctx.error(UNDECLARED_STORE_ADDRESS, f"the {store_type} {kind[:-5]} store's address "
                      "is in its connection secret, so no NetworkPolicy lets the pods reach "
                      "it: every pod's egress is denied but for the flows mlc knows",
                      ("platform", "featureStore", kind, "type"),
                      help=_HELP)
    for name in sorted(ctx.project.sources):
        source_type = ctx.project.sources[name].type
        if source_type in _SOURCE_ADDRESSED:
            ctx.error(UNDECLARED_STORE_ADDRESS, f"source `{name}` reads {source_type} at a "
                      "host that no NetworkPolicy lets the pods reach: every pod's egress is "
                      "denied but for the flows mlc knows", ("sources", name, "type"),
                      help=_HELP)


_HELP = ("declare where it is: `platform: {network: {egress: [{namespace: redis, ports: "
         "[6379]}]}}` (or `{cidr: 10.0.0.0/16, ports: [...]}`)")
