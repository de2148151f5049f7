"""The consumer's librdkafka settings, from the IR's `KafkaConnection` and the pod's env.

Offsets are committed only after a batch is in the online store (loop.py), so librdkafka's
own periodic commit is off: a crash between consume and write re-reads those messages
rather than losing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mlc import ingest_contract as contract
from mlc.compiler import ir


class ConfigError(Exception):
    pass


def consumer_config(ingestion: ir.Ingestion, env: Mapping[str, str]) -> dict[str, object]:
    return {
        "group.id": ingestion.consumer_group,
        "client.id": f"mlc-ingest-{ingestion.source}",
        "enable.auto.commit": False,
        "auto.offset.reset": ingestion.start_from,
        **connection_config(ingestion.kafka, env),
    }


def connection_config(k: ir.KafkaConnection, env: Mapping[str, str]) -> dict[str, object]:
    """The brokers and the credentials, which a consumer and a producer share."""
    out: dict[str, object] = {
        "bootstrap.servers": k.bootstrap_servers,
        "security.protocol": k.security_protocol,
    }
    if k.sasl_mechanism:
        out["sasl.mechanism"] = k.sasl_mechanism
        out["sasl.username"] = k.sasl_username or _required(env, contract.SASL_USERNAME_ENV)
        out["sasl.password"] = _required(env, contract.SASL_PASSWORD_ENV)
    if k.security_protocol in ("SSL", "SASL_SSL"):
        for part, key in (("ca", "ssl.ca.location"), ("cert", "ssl.certificate.location"),
                          ("key", "ssl.key.location")):
            if getattr(k, f"tls_{part}") is not None:
                path = _required(env, contract.TLS_FILE_ENV[part])
                if not Path(path).is_file():
                    raise ConfigError(f"the TLS {part} file {path} is missing: is the Secret "
                                      "volume mounted?")
                out[key] = path
    return out


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise ConfigError(f"{name} is not set: the pod reads it from its Secret")
    return value
