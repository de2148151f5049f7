"""The root of ml.yaml."""


from typing import Annotated, Literal

from pydantic import Field

from .features import Entity, FeatureService, FeatureView
from .governance import AcceptedRisk
from .hardware import HardwareProfile
from .images import Images
from .metadata import Metadata
from .models import Model
from .monitoring import Monitoring
from .platform import Platform
from .secrets import Secret
from .serving import Endpoint
from .sources import Source
from .types import Name, Spec
from .vectors import VectorStore

API_VERSION = "mlc.dev/v1"


class PlatformFromGit(Spec):
    """A platform file at a pinned commit of a git repository, read from its vendored copy
    (`mlc vendor` fetches it into .mlc/vendor/; compiling never reaches the network)."""

    git: str = Field(min_length=1, pattern=r"^(https://|ssh://|file://|git@)\S+$",
                     description="The repository's URL.",
                     examples=["https://git.example.com/platform/config.git"])
    rev: str = Field(pattern=r"^[0-9a-f]{40}$", description="The commit, all 40 hex digits: "
                     "a branch or tag would move.",
                     examples=["3f9c1e0b2a4d5c6e7f8091a2b3c4d5e6f7a8b9c0"])
    path: str = Field(min_length=1, description="The platform file inside the repository.",
                      examples=["platform.yaml"])


class Project(Spec):
    api_version: Literal["mlc.dev/v1"] = Field(description="Version of the ml.yaml language.")
    kind: Literal["Project"]
    """Always `Project`."""
    metadata: Metadata
    """Who owns the project and how its objects are named and labelled."""
    platform: Platform = Field(default_factory=Platform)
    """Where and how an environment runs; usually set per environment in environments/<env>.yaml."""
    images: Images = Field(default_factory=Images)
    """The runtime images the generated manifests run, and the project's own."""
    hardware: dict[Name, HardwareProfile] = Field(default_factory=dict)
    """Named resource profiles (CPU, memory, GPU, node placement) that training and endpoints
    refer to by name."""
    secrets: dict[Name, Secret] = Field(default_factory=dict)
    """Secrets by reference (a Kubernetes Secret or an external store); ml.yaml never holds a
    secret's value."""
    sources: dict[Name, Source] = Field(default_factory=dict)
    """Where data comes from: files, warehouses, Kafka or pushed events."""
    entities: dict[Name, Entity] = Field(default_factory=dict)
    """The things features describe (a customer, a card), by their join key."""
    features: dict[Name, FeatureView] = Field(default_factory=dict)
    """Feature views: fields read from a source per entity, offline and online."""
    feature_services: dict[Name, FeatureService] = Field(default_factory=dict)
    """Named sets of features that a model reads."""
    vector_stores: dict[Name, VectorStore] = Field(default_factory=dict)
    """Milvus connections that feature views write their embeddings to (docs/vector-stores.md)."""
    models: dict[Name, Model] = Field(default_factory=dict)
    """What is trained, from which features and label, and how it is judged."""
    serving: dict[Name, Endpoint] = Field(default_factory=dict)
    """Endpoints that serve a model online, serverless or in batch."""
    monitoring: Monitoring = Field(default_factory=Monitoring)
    """Drift checks, what happens on drift, and where alerts go."""
    extends: Annotated[str, Field(min_length=1)] | PlatformFromGit | None = Field(
        None, description="A platform file (docs/platform-files.md), relative to "
        "this folder, or `{git, rev, path}` at a pinned commit: hardware, images, policies "
        "and Argo CD and cost settings that a platform team owns; values set here override "
        "it.")
    policies: str | None = Field(
        None, min_length=1, description="A policies file (docs/policies.md), relative to this "
        "folder; may be shared by many projects (`../platform/policies.yaml`).")
    accepted_risks: list[AcceptedRisk] = Field(
        default_factory=list, description="Policy violations let through on purpose "
        "(docs/policies.md); usually in an environment's overlay.")
