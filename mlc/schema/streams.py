"""A Kafka source's connection (`auth`) and the Deployment that feeds its feature views
(`ingest`): the settings `sources.<name>` of type `kafka` adds to the topic and format.

Credentials are secrets by reference only: the SASL password (and, if it is secret, the user
name) and the TLS CA, client certificate and key are `...Secret` keys naming entries under
`secrets:`.
"""


from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from .types import Duration, Name, Seconds, Spec


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


# A Kafka topic name, as the brokers accept it.
KafkaTopic = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,249}$"),
                       Field(examples=["fraud-scores"])]


class StreamScoring(Spec):
    """`mode: stream`: a consumer Deployment that scores each event of a Kafka source's topic
    with the endpoint's model and writes the scored event to another topic (docs/streams.md,
    "Stream scoring")."""

    input: Name = Field(description="The Kafka source (`sources.<name>`, `type: kafka`) whose "
                        "topic is scored: its brokers, `auth` and `format`.")
    output_topic: KafkaTopic = Field(description="Topic the scored events are written to, on "
                                     "the input's brokers with its `auth`.")
    key: Name | None = Field(None, description="A field of each event carried over into its "
                             "scored event, and its Kafka message key; unset: the input "
                             "message's own key is carried over.")
    consumer_group: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,200}$",
                                       examples=["fraud-api-score"],
                                       description="Kafka consumer group; defaults to "
                                       "`<project>-<endpoint>-score`.")
    start_from: Literal["earliest", "latest"] = "latest"
    """Where a new consumer group starts reading."""
    batch_size: int = Field(100, ge=1, le=10000)
    """Most events scored in one model call."""
    linger: Duration = Field("100ms", description="Longest the consumer waits for a batch to "
                             "fill before it scores what it has.")
    on_poison: Literal["deadLetter", "skip"] = Field(description="An event that cannot be "
                                                     "scored (not JSON, a feature missing or "
                                                     "mistyped): `deadLetter` writes it to "
                                                     "`deadLetterTopic`, `skip` passes over "
                                                     "it; both count it.")
    dead_letter_topic: KafkaTopic | None = Field(None, description="`onPoison: deadLetter`: "
                                                 "where unscorable events go, unchanged, with "
                                                 "the reason in a header.")
    lag_per_replica: int | None = Field(None, ge=1, le=10_000_000, description="KEDA only: "
                                        "messages of consumer-group lag per replica; defaults "
                                        "to `batchSize` x 10.")
    max_lag: int = Field(10000, ge=1, description="Alert when the group is this many "
                         "messages behind the topic's end...")
    lag_for: Seconds = Field("10m", description="...for this long.")

    @model_validator(mode="after")
    def _poison(self):
        if (self.on_poison == "deadLetter") != (self.dead_letter_topic is not None):
            raise PydanticCustomError("mlc_one_of", "`onPoison: deadLetter` needs "
                                      "`deadLetterTopic`, and only it reads one", {})
        return self


class Keda(Spec):
    """KEDA is installed: stream endpoints scale on their consumer group's lag."""

    polling_interval: Seconds = Field("30s", description="How often KEDA reads the lag.")
    cooldown_period: Seconds = Field("5m", description="How long the lag must be zero before "
                                     "an endpoint with `minReplicas: 0` scales to zero.")
