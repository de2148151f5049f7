"""`entities`, `features` (feature views) and `featureServices`."""

from __future__ import annotations

from pydantic import Field

from .sources import ValueType
from .types import Cron, FieldName, Name, Seconds, Spec


class Entity(Spec):
    join_key: FieldName = Field(description="Column that identifies the entity.")
    type: ValueType = "int64"
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class FeatureField(Spec):
    name: FieldName
    type: ValueType
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class DerivedFeature(Spec):
    """A feature computed at request time from other features of the same view."""

    name: FieldName
    type: ValueType = "float64"
    expression: str = Field(min_length=1, max_length=500,
                            description="Arithmetic over the view's fields: names, numbers, "
                            "+ - * / and parentheses, e.g. `amount / (amount_avg_7d + 1)`.")
    description: str | None = None


class Materialization(Spec):
    schedule: Cron = Field("0 * * * *", description="When new data is copied to the online store.")


class FeatureView(Spec):
    entities: list[Name] = Field(min_length=1)
    source: Name
    fields: list[FeatureField] = Field(min_length=1)
    derived: list[DerivedFeature] = Field(default_factory=list)
    ttl: Seconds = Field("7d", description="How far back a point-in-time join looks.")
    online: bool = True
    materialization: Materialization = Field(default_factory=Materialization)
    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class FeatureService(Spec):
    features: list[str] = Field(min_length=1, description="`view` for all of its fields, or "
                                "`view:field` for one.")
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
