"""`hardware`: named resource profiles that training steps and endpoints refer to."""


import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .editor import EditorHint
from .types import DnsLabel, LabelKey, LabelValue, MemoryQuantity, Name, Quantity, Spec

# A Kubernetes extended resource name: a DNS-subdomain prefix, `/`, a name (what the
# device plugins advertise, e.g. `vpc.amazonaws.com/efa`, `rdma/hca`); the prefix is required
# (names without one are the native resources: cpu, memory, ...).
_EXTENDED_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
                          r"/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def _extended_resource(value: str) -> str:
    prefix = value.partition("/")[0]
    if not _EXTENDED_RE.fullmatch(value) or len(prefix) > 253:
        raise PydanticCustomError(
            "mlc_label", "invalid extended resource name `{value}`: expected a domain prefix, "
            "`/` and a name of at most 63 letters, digits, `-`, `_` or `.` (e.g. "
            "`vpc.amazonaws.com/efa`, `rdma/hca`)", {"value": value})
    return value


ExtendedResourceName = Annotated[str, AfterValidator(_extended_resource), EditorHint(
    "^" + _EXTENDED_RE.pattern + "$", ("vpc.amazonaws.com/efa", "rdma/hca"),
    "an extended resource name: a domain prefix, `/` and a name", None)]


class Gpu(Spec):
    type: str = Field(description="GPU product, matched against the node label "
                      "`nvidia.com/gpu.product` (e.g. `NVIDIA-A100-SXM4-80GB`).",
                      pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
                      examples=["NVIDIA-A100-SXM4-80GB"])
    count: PositiveInt = Field(1, le=64)
    """GPUs per pod (or MIG slices, with `mig`)."""
    memory: MemoryQuantity | None = Field(None, description="Minimum GPU memory, for docs and "
                                          "scheduling hints.")
    mig: str | None = Field(None, pattern=r"^[1-7]g\.[0-9]+gb$", examples=["1g.10gb", "3g.40gb"],
                            description="A MIG slice such as `1g.10gb`; requests "
                            "`nvidia.com/mig-<slice>` instead of whole GPUs.")


class Toleration(Spec):
    key: LabelKey  # taints are keyed like labels
    """Taint key the toleration matches."""
    operator: Literal["Equal", "Exists"] = "Equal"
    """`Equal`: the taint's value must be `value`; `Exists`: any value."""
    value: LabelValue | None = None
    """Taint value, with `operator: Equal`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect matched; unset: every effect."""

    @model_validator(mode="after")
    def _exists_has_no_value(self):
        if self.operator == "Exists" and self.value:
            raise PydanticCustomError("mlc_one_of", "a toleration with `operator: Exists` "
                                      "matches any value; remove `value`", {})
        return self


class HardwareProfile(Spec):
    cpu: Quantity = Field("1", description="CPU request (cores).")
    memory: MemoryQuantity = Field("2Gi", description="Memory request and limit.")
    cpu_limit: Quantity | None = Field(None, description="CPU limit; defaults to the request.")
    ephemeral_storage: MemoryQuantity | None = None
    """Local disk request and limit (scratch space, caches)."""
    gpu: Gpu | None = None
    """GPUs the pod needs; unset: none."""
    spot: bool = Field(False, description="Run on spot/preemptible nodes.")
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    """Node labels the pods must run on."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Taints the pods tolerate (e.g. of GPU or spot nodes)."""
    priority_class: DnsLabel | None = None
    """PriorityClass of the pods."""
    queue: Name | None = Field(None, description="Kueue LocalQueue name.")
    extended_resources: dict[ExtendedResourceName, PositiveInt] = Field(
        default_factory=dict, description="Device-plugin resources per pod, requested and "
        "limited alike (e.g. `vpc.amazonaws.com/efa: 4`, `rdma/hca: 1`); GPUs go under "
        "`gpu`.")
    shared_memory: MemoryQuantity | None = Field(
        None, description="Size of /dev/shm (a memory-backed emptyDir, counted in the pod's "
        "memory) for NCCL and data loaders, e.g. `16Gi`; below `memory`.")
