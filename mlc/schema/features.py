"""`entities`, `features` (feature views) and `featureServices`."""


from pydantic import Field

from .sources import ValueType
from .types import Cron, FieldName, Name, Seconds, Spec
from .vectors import ViewVectorStore


class Entity(Spec):
    join_key: FieldName = Field(description="Column that identifies the entity.")
    type: ValueType = "int64"
    """Value type of the join key."""
    description: str | None = None
    """What the entity is."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Free-form tags, passed to the Feast entity."""


class FeatureField(Spec):
    name: FieldName
    """Feature name: the column in the source."""
    type: ValueType
    """Value type of the feature."""
    description: str | None = None
    """What the feature measures."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Free-form tags, passed to the Feast field."""


class DerivedFeature(Spec):
    """A feature computed at request time from other features of the same view."""

    name: FieldName
    """Name of the computed feature."""
    type: ValueType = "float64"
    """Value type of the result."""
    expression: str = Field(min_length=1, max_length=500,
                            description="Arithmetic over the view's fields: names, numbers, "
                            "+ - * / and parentheses, e.g. `amount / (amount_avg_7d + 1)`.")
    description: str | None = None
    """What the feature measures."""


class Materialization(Spec):
    schedule: Cron = Field("0 * * * *", description="When new data is copied to the online store.")


class FeatureView(Spec):
    entities: list[Name] = Field(min_length=1)
    """Entities (under `entities`) whose join keys identify a row."""
    source: Name
    """Source (under `sources`) the fields are read from."""
    fields: list[FeatureField] = Field(min_length=1)
    """Features read from the source."""
    derived: list[DerivedFeature] = Field(default_factory=list)
    """Features computed at request time from this view's fields."""
    ttl: Seconds = Field("7d", description="How far back a point-in-time join looks.")
    online: bool = True
    """Copy the features to the online store for serving."""
    materialization: Materialization = Field(default_factory=Materialization)
    """When the online store is refreshed."""
    vector_store: ViewVectorStore | None = None
    """Write the view's embeddings to a vector store after each materialisation."""
    description: str | None = None
    """What the view holds."""
    owner: str | None = None
    """Who to ask about the features."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Free-form tags, passed to the Feast feature view."""


class FeatureService(Spec):
    features: list[str] = Field(min_length=1, description="`view` for all of its fields, or "
                                "`view:field` for one.")
    description: str | None = None
    """What the feature set is for."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Free-form tags, passed to the Feast feature service."""
