"""`secrets`: references to secrets kept elsewhere. ml.yaml never holds a secret's value.

A `kubernetes:` secret already exists in the environment's namespace (mlc creates nothing);
an `external:` secret is synced into a Secret by the ExternalSecret that mlc emits for it.
Environment variables take either a literal string or `{secret: <name>}`, a reference.
"""


from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .types import DnsLabel, EnvVarName, Name, SecretKey, Spec


class KubernetesSecretRef(Spec):
    name: DnsLabel
    """Name of the Secret in the environment's namespace."""
    key: SecretKey
    """Key inside the Secret."""


class ExternalSecretRef(Spec):
    store: DnsLabel | None = Field(
        None, description="External Secrets Operator store to read it from; defaults to "
        "`platform.secretStore.name` (and is always of that store's kind).")
    path: str = Field(min_length=1, description="Path of the secret in the store.")
    key: str | None = Field(None, pattern=r"^[-._a-zA-Z0-9]+$", examples=["password"],
                            description="Property inside the secret, if any.")


class Secret(Spec):
    kubernetes: KubernetesSecretRef | None = Field(
        None, description="A Secret that already exists in the namespace; mlc creates nothing.")
    external: ExternalSecretRef | None = Field(
        None, description="A secret in an external store, synced by an ExternalSecret.")

    @model_validator(mode="after")
    def exactly_one(self) -> "Secret":
        if (self.kubernetes is None) == (self.external is None):
            raise PydanticCustomError(
                "mlc_one_of", "a secret is either `kubernetes: {name, key}` or "
                "`external: {path, key}`, exactly one of them", {})
        return self


class SecretEnv(Spec):
    """An environment variable read from a declared secret, by reference."""

    secret: Name = Field(description="A name under `secrets:`.")


# Names by Kubernetes' rule; those the step and serving contracts set are refused (EnvVarName).
EnvVars = dict[EnvVarName, str | SecretEnv]
