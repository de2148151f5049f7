"""Pod fields that Knative's webhook refuses unless the cluster enables a feature flag.

Knative validates the pod spec of every Service and Configuration against a field mask; a
node selector, tolerations or a priority class (what GPU and spot hardware profiles add) are
allowed only with the matching `config-features` flag, all disabled in a default install.
`platform.knative.features` says which flags the cluster has; anything else is refused here,
not by the cluster at sync time. (The pod's security settings need no flag: they are written
on the container, see backends/serving/pod.py.)
"""

from __future__ import annotations

from ...schema.serving import Endpoint
from .. import ir
from .context import Context

KNATIVE_FLAG_OFF = "MLC345"
INIT_CONTAINERS = "kubernetes.podspec-init-containers"


def needed_flags(profile: ir.Hardware) -> list[tuple[str, str]]:
    """(pod field, Knative flag) for each field of the profile that needs one."""
    out = []
    if profile.node_selector:
        out.append(("nodeSelector", "kubernetes.podspec-nodeselector"))
    if profile.tolerations:
        out.append(("tolerations", "kubernetes.podspec-tolerations"))
    if profile.priority_class:
        out.append(("priorityClassName", "kubernetes.podspec-priorityclassname"))
    return out


def check_knative_flags(ctx: Context, name: str, e: Endpoint, profile: ir.Hardware | None
                        ) -> None:
    if e.mode != "serverless" or profile is None:
        return  # only serverless endpoints (Knative, or KServe's Knative mode) run on Knative
    enabled = set(ctx.project.platform.knative.features)
    if e.engine not in ("mlc", "custom") and INIT_CONTAINERS not in enabled:
        # the model fetch (backends/serving/engines.py) is an init container of the pod
        ctx.error(KNATIVE_FLAG_OFF, f"serverless endpoint `{name}`: engine `{e.engine}` "
                  "fetches its model in an init container, which Knative refuses unless its "
                  f"feature flag `{INIT_CONTAINERS}` is enabled", ("serving", name, "engine"),
                  help=f"enable `{INIT_CONTAINERS}` in knative-serving's `config-features` "
                       "and list it in `platform.knative.features`, or serve this endpoint "
                       "with `mode: online`")
    missing = [(f, flag) for f, flag in needed_flags(profile) if flag not in enabled]
    if not missing:
        return
    fields = ", ".join(f"`{f}`" for f, _ in missing)
    flags = ", ".join(f"`{flag}`" for _, flag in missing)
    ctx.error(KNATIVE_FLAG_OFF, f"serverless endpoint `{name}`: hardware profile "
              f"`{e.hardware}` puts {fields} on its pods, which Knative refuses unless its "
              f"feature flag(s) {flags} are enabled", ("serving", name, "hardware"),
              help=f"enable {flags} in knative-serving's `config-features` and list them in "
                   "`platform.knative.features`, or serve this endpoint with `mode: online`")
