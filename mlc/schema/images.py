"""`images`: the runtime images the generated manifests run, and the user's own images."""


from pydantic import Field

from .types import ImageRef, Name, Spec

DEFAULT_REGISTRY = "ghcr.io/mlc-dev"


class Images(Spec):
    train: ImageRef = Field(f"{DEFAULT_REGISTRY}/mlc-train:0.1.0",
                            description="Training runtime (torch + MLflow).")
    serve: ImageRef = Field(f"{DEFAULT_REGISTRY}/mlc-serve:0.1.0",
                            description="Serving runtime (Open Inference Protocol v2).")
    drift: ImageRef = Field(f"{DEFAULT_REGISTRY}/mlc-drift:0.1.0",
                            description="Drift-check runtime.")
    custom: dict[Name, ImageRef] = Field(
        default_factory=dict, description="User images, referred to by name from training.")
