"""`apiVersion`, `kind`, `metadata`: who owns the project and how its objects are labelled."""


from pydantic import Field

from .types import DnsLabel, LabelKey, LabelValue, Spec


class Metadata(Spec):
    name: DnsLabel = Field(description="Project name; prefixes every generated object.")
    version: str = Field("0.1.0", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", examples=["1.4.0"],
                         description="Project version; the `app.kubernetes.io/version` label.")
    team: DnsLabel | None = Field(None, description="Owning team; becomes a label.")
    owners: list[str] = Field(default_factory=list, description="People or groups to contact.")
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="Extra labels put on every generated object.")
    description: str | None = None
    """What the project does, for people reading the plan and the docs."""
