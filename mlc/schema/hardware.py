"""`hardware`: named resource profiles that training steps and endpoints refer to."""


from typing import Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .types import DnsLabel, LabelKey, LabelValue, MemoryQuantity, Name, Quantity, Spec


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
