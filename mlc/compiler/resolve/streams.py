"""Kafka sources: their connection (SASL, TLS, secrets by reference) and the ingestion
Deployment that writes each message to the online store of the feature views they feed.

One ingestion per Kafka source read by an online feature view; it writes every such view.
What it cannot do is refused here, located: a password that would cross the network in clear
(outside development), a message format the consumer cannot decode.
"""

from __future__ import annotations

import re

from pydantic.alias_generators import to_camel

from ...schema.types import duration_seconds
from .. import ir
from ..names import dns_label
from .context import Context
from .platform import secret_ref

CLEARTEXT_PASSWORD = "MLC570"
UNDECODABLE_MESSAGES = "MLC571"
NOTHING_INGESTED = "MLC572"
BAD_BOOTSTRAP_SERVER = "MLC573"

# `host:port`: a DNS name or an IPv4 address, or an IPv6 address in brackets, and a port.
_BOOTSTRAP_SERVER = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})")

# What the consumer decodes (mlc/runtime/ingest/messages.py).
INGEST_FORMATS = frozenset({"json"})


def resolve_ingestions(ctx: Context, views: dict[str, ir.FeatureView],
                       secrets: dict[str, ir.SecretRef], hardware: dict[str, ir.Hardware],
                       images: dict[str, ir.Image]) -> dict[str, ir.Ingestion]:
    out = {}
    for name in sorted(ctx.project.sources):
        s = ctx.project.sources[name]
        if s.type != "kafka":
            continue
        path = ("sources", name)
        fed = sorted(v.name for v in views.values() if v.source == name and v.online)
        if not fed:
            # a `topic` trigger's EventSource connects with `auth` (resolve/triggers.py)
            if s.model_fields_set & {"auth", "ingest"} and not (
                    "ingest" not in s.model_fields_set and (_read_by_trigger(ctx, name)
                                                            or _scored(ctx, name))):
                ctx.warning(NOTHING_INGESTED, f"no online feature view reads `{name}`, so "
                            "nothing consumes its topic and its `auth`/`ingest` settings do "
                            "nothing", path, help="read it in a feature view with "
                            "`online: true`, or remove the settings")
            continue
        if s.format not in INGEST_FORMATS:
            ctx.error(UNDECODABLE_MESSAGES, f"the ingestion of `{name}` cannot decode "
                      f"{s.format} messages, and feature view `{fed[0]}` is fed by it",
                      (*path, "format"), help="publish the topic as JSON (`format: json`)")
            continue
        servers = check_bootstrap_servers(ctx, s.bootstrap_servers, (*path, "bootstrapServers"))
        kafka = kafka_connection(ctx, s, secrets, path)
        ingest = s.ingest
        ctx.check_ref(ingest.hardware, hardware, "hardware profile", (*path, "ingest",
                      "hardware"), "hardware")
        if kafka is None or not servers:
            continue
        out[name] = ir.Ingestion(
            source=name, k8s_name=dns_label(name, "ingest"), views=fed, kafka=kafka,
            consumer_group=ingest.consumer_group or f"{ctx.project.metadata.name}-{name}-ingest",
            start_from=ingest.start_from, replicas=ingest.replicas, hardware=ingest.hardware,
            image=images["serve"], batch_size=ingest.batch_size, max_lag=ingest.max_lag,
            lag_for_seconds=int(duration_seconds(ingest.lag_for)), origin=ctx.origin(path))
    return out


def _read_by_trigger(ctx: Context, source: str) -> bool:
    return any(t.topic is not None and t.topic.source == source
               for m in ctx.project.models.values() for t in m.training.triggers.values())


def _scored(ctx: Context, source: str) -> bool:
    """A stream endpoint connects with `auth` (resolve/stream_scoring.py)."""
    return any(e.mode == "stream" and e.stream is not None and e.stream.input == source
               for e in ctx.project.serving.values())


def check_bootstrap_servers(ctx: Context, text: str, path) -> bool:
    """The consumer and the NetworkPolicy read every entry as `host:port`."""
    for entry in text.split(","):
        match = _BOOTSTRAP_SERVER.fullmatch(entry.strip())
        if match is None or not 0 < int(match.group(1)) < 65536:
            ctx.error(BAD_BOOTSTRAP_SERVER, f"bootstrap server `{entry.strip()}` is not "
                      "`host:port`", path, help="list the brokers as `host:port[,host:port]`, "
                      "e.g. `kafka-bootstrap.kafka.svc:9092`")
            return False
    return True


def kafka_connection(ctx: Context, s, secrets: dict[str, ir.SecretRef],
                path) -> ir.KafkaConnection | None:
    sasl, tls = s.auth.sasl, s.auth.tls
    auth = (*path, "auth")

    def ref(section, field: str) -> ir.SecretRef | None:
        name = getattr(section, field) if section else None
        part = "sasl" if section is sasl else "tls"
        return secret_ref(ctx, secrets, name, (*auth, part, to_camel(field)))

    errors = len(ctx.diags.errors)
    user_secret = ref(sasl, "username_secret")
    password = ref(sasl, "password_secret")
    ca, cert, key = (ref(tls, f) for f in ("ca_secret", "cert_secret", "key_secret"))
    if sasl and not tls and not ctx.development:
        ctx.error(CLEARTEXT_PASSWORD, f"source `{path[1]}` "
                  f"sends its SASL {sasl.mechanism} password to the brokers without TLS",
                  (*auth, "sasl"), help="add `tls: {}` under `auth` (with `caSecret: <name>` "
                  "for a private CA), or mark a throw-away environment with "
                  "`platform: {development: true}`")
    if len(ctx.diags.errors) > errors:
        return None
    protocol = {(False, False): "PLAINTEXT", (False, True): "SSL",
                (True, False): "SASL_PLAINTEXT", (True, True): "SASL_SSL"}[
                    (sasl is not None, tls is not None)]
    return ir.KafkaConnection(
        bootstrap_servers=s.bootstrap_servers, topic=s.topic, format=s.format,
        security_protocol=protocol, sasl_mechanism=sasl.mechanism if sasl else None,
        sasl_username=sasl.username if sasl else None,
        sasl_username_secret=user_secret, sasl_password_secret=password, tls_ca=ca,
        tls_cert=cert, tls_key=key)
