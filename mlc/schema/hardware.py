"""`hardware`: named resource profiles that training steps and endpoints refer to."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from .types import DnsLabel, LabelKey, LabelValue, MemoryQuantity, Name, Quantity, Spec


class Gpu(Spec):
    type: str = Field(description="GPU product, matched against the node label "
                      "`nvidia.com/gpu.product` (e.g. `NVIDIA-A100-SXM4-80GB`).",
                      pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
    count: PositiveInt = Field(1, le=64)
    memory: MemoryQuantity | None = Field(None, description="Minimum GPU memory, for docs and "
                                          "scheduling hints.")
    mig: str | None = Field(None, pattern=r"^[1-7]g\.\d+gb$",
                            description="A MIG slice such as `1g.10gb`; requests "
                            "`nvidia.com/mig-<slice>` instead of whole GPUs.")


class Toleration(Spec):
    key: LabelKey  # taints are keyed like labels
    operator: Literal["Equal", "Exists"] = "Equal"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

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
    gpu: Gpu | None = None
    spot: bool = Field(False, description="Run on spot/preemptible nodes.")
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class: DnsLabel | None = None
    queue: Name | None = Field(None, description="Kueue LocalQueue name.")
