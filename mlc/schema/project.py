"""The root of ml.yaml."""

from __future__ import annotations

from typing import Literal

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

API_VERSION = "mlc.dev/v1"


class Project(Spec):
    api_version: Literal["mlc.dev/v1"] = Field(description="Version of the ml.yaml language.")
    kind: Literal["Project"]
    metadata: Metadata
    platform: Platform = Field(default_factory=Platform)
    images: Images = Field(default_factory=Images)
    hardware: dict[Name, HardwareProfile] = Field(default_factory=dict)
    secrets: dict[Name, Secret] = Field(default_factory=dict)
    sources: dict[Name, Source] = Field(default_factory=dict)
    entities: dict[Name, Entity] = Field(default_factory=dict)
    features: dict[Name, FeatureView] = Field(default_factory=dict)
    feature_services: dict[Name, FeatureService] = Field(default_factory=dict)
    models: dict[Name, Model] = Field(default_factory=dict)
    serving: dict[Name, Endpoint] = Field(default_factory=dict)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    extends: str | None = Field(
        None, min_length=1, description="A platform file (docs/platform-files.md), relative to "
        "this folder: hardware, images, policies and Argo CD and cost settings that a "
        "platform team owns; values set here override it.")
    policies: str | None = Field(
        None, min_length=1, description="A policies file (docs/policies.md), relative to this "
        "folder; may be shared by many projects (`../platform/policies.yaml`).")
    accepted_risks: list[AcceptedRisk] = Field(
        default_factory=list, description="Policy violations let through on purpose "
        "(docs/policies.md); usually in an environment's overlay.")
