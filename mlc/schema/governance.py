"""Production guardrails: `platform.production`, `platform.guardrails` and `acceptedRisks`.

The built-in policies (mlc/compiler/policy/) hold in production environments; an
`acceptedRisks:` entry lets one violation through on purpose, with a reason the plan shows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .types import Duration, Spec

# The built-in policies' codes, documented in docs/policies.md and docs/diagnostics.md.
PolicyCode = Literal["MLC500", "MLC501", "MLC502", "MLC503", "MLC504", "MLC505", "MLC506"]


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
