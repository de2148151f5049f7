"""A Kafka source's connection (`auth`) and the Deployment that feeds its feature views
(`ingest`): the settings `sources.<name>` of type `kafka` adds to the topic and format.

Credentials are secrets by reference only: the SASL password (and, if it is secret, the user
name) and the TLS CA, client certificate and key are `...Secret` keys naming entries under
`secrets:`.
"""


from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .types import Name, Seconds, Spec


class KafkaSasl(Spec):
    """SASL authentication to the brokers."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    """SASL mechanism the brokers accept."""
    username: str | None = Field(None, min_length=1, max_length=255)
    """User name, when it is no secret; or set `usernameSecret`."""
    username_secret: Name | None = None
    """Secret (under `secrets:`) holding the user name."""
    password_secret: Name
    """Secret (under `secrets:`) holding the password."""

    @model_validator(mode="after")
    def _username(self):
        if (self.username is None) == (self.username_secret is None):
            raise PydanticCustomError("mlc_one_of", "set exactly one of `username` and "
                                      "`usernameSecret`", {})
        return self


class KafkaTls(Spec):
    """TLS to the brokers; `{}` verifies them against the image's CA bundle."""

    ca_secret: Name | None = None
    """Secret holding the PEM CA certificate(s) that signed the brokers' certificates."""
    cert_secret: Name | None = None
    """Secret holding a PEM client certificate, for brokers that authenticate clients by TLS."""
    key_secret: Name | None = None
    """Secret holding the PEM private key of `certSecret`."""

    @model_validator(mode="after")
    def _pair(self):
        if (self.cert_secret is None) != (self.key_secret is None):
            raise PydanticCustomError("mlc_pair", "set both `certSecret` and `keySecret`, or "
                                      "neither", {})
        return self


class KafkaAuth(Spec):
    sasl: KafkaSasl | None = None
    """SASL user and password."""
    tls: KafkaTls | None = None
    """Encrypt the connection (and optionally authenticate by client certificate)."""


class KafkaIngest(Spec):
    """The Deployment that consumes the topic and writes each message to the online store."""

    replicas: int = Field(1, ge=1, le=100, description="Consumers in the group; more than the "
                          "topic's partitions sit idle.")
    hardware: Name = "default"
    """Hardware profile of the consumer pods."""
    consumer_group: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,200}$",
                                       examples=["fraud-transactions-ingest"],
                                       description="Kafka consumer group; defaults to "
                                       "`<project>-<source>-ingest`.")
    start_from: Literal["earliest", "latest"] = "latest"
    """Where a new consumer group starts reading."""
    batch_size: int = Field(500, ge=1, le=100000)
    """Most messages written to the online store in one write."""
    max_lag: int = Field(10000, ge=1, description="Alert when the group is this many "
                         "messages behind the topic's end...")
    lag_for: Seconds = Field("10m", description="...for this long.")
