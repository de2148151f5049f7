"""`secrets`: references to secrets kept elsewhere. ml.yaml never holds a secret's value."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .types import DnsLabel, SecretKey, Spec


class KubernetesSecretRef(Spec):
    name: DnsLabel
    key: SecretKey


class ExternalSecretRef(Spec):
    store: DnsLabel = Field(description="External Secrets Operator (Cluster)SecretStore name.")
    path: str = Field(min_length=1, description="Path of the secret in the store.")
    key: str | None = Field(None, description="Property inside the secret, if any.")


class Secret(Spec):
    kubernetes: KubernetesSecretRef | None = None
    external: ExternalSecretRef | None = None

    @model_validator(mode="after")
    def exactly_one(self) -> Secret:
        if (self.kubernetes is None) == (self.external is None):
            raise PydanticCustomError(
                "mlc_one_of", "a secret is either `kubernetes: {{name, key}}` or "
                "`external: {{store, path}}`, exactly one of them", {})
        return self
