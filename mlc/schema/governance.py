"""Production guardrails: `platform.production`, `platform.guardrails` and `acceptedRisks`.

The built-in policies (mlc/compiler/policy/) hold in production environments; an
`acceptedRisks:` entry lets one violation through on purpose, with a reason the plan shows.
"""


from typing import Literal

from pydantic import Field

from .types import Duration, LabelValue, Spec

# The built-in policies' codes, documented in docs/policies.md and docs/diagnostics.md.
PolicyCode = Literal["MLC500", "MLC501", "MLC502", "MLC503", "MLC504", "MLC505", "MLC506",
                     "MLC508", "MLC510"]


class Guardrails(Spec):
    """Limits that the built-in policies check in a production environment."""

    max_gpus_per_replica: int | None = Field(
        None, ge=0, description="Most GPUs (or MIG slices) one pod or one training node may "
        "ask for; unset: no cap.")
    gpu_types: list[str] | None = Field(
        None, description="GPU types (`hardware.<profile>.gpu.type`) allowed here; unset: any.")
    min_training_interval: Duration = Field(
        "1h", description="Scheduled training may not start more often than this.")


class AcceptedRisk(Spec):
    code: PolicyCode = Field(description="The policy whose violation is accepted.")
    subject: str = Field(min_length=1, description="What it is about, as the plan names it "
                         "(e.g. `serving.fraud-api`, `images.serve`).")
    reason: str = Field(min_length=1, description="Why; shown in the plan next to the risk.")


class Prices(Spec):
    """List prices in USD per hour; unset: mlc's defaults (docs/cost.md)."""

    cpu_core_hour: float | None = Field(None, ge=0)
    """USD per CPU core and hour."""
    memory_gib_hour: float | None = Field(None, ge=0)
    """USD per GiB of memory and hour."""
    gpu_hour: dict[str, float] = Field(
        default_factory=dict, description="Per GPU type (`hardware.<profile>.gpu.type`), per "
        "whole GPU; a MIG slice `<n>g.<m>gb` costs n/7 of its GPU. Adds to or replaces the "
        "defaults.")
    spot_discount: float | None = Field(None, ge=0, lt=1, description="The share of the "
                                        "on-demand price that spot capacity saves.")


class Cost(Spec):
    """What the plan prices a change at, and what an environment may spend."""

    prices: Prices = Field(default_factory=Prices)
    """List prices the plan uses; unset: mlc's defaults."""
    monthly_budget: float | None = Field(
        None, ge=0, description="USD per month; a plan whose most expensive case (every "
        "endpoint at its max replicas) costs more is refused unless accepted (MLC508).")
    job_duration: Duration = Field(
        "15m", description="How long a drift check, batch scoring or materialization run "
        "takes, for its cost.")
    cost_center: LabelValue | None = Field(
        None, description="The `department` cost-allocation label on every object.")
