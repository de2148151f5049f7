"""`mode: stream` endpoints: the Kafka topic they score, where the scored events go, and what
stream mode refuses (docs/streams.md, "Stream scoring").

A stream endpoint is a consumer Deployment, not an HTTP server: no request reaches it, so
nothing can split, mirror or gate its traffic, and the settings that only an HTTP server or
its autoscaler reads would do nothing. Each is refused here, located, rather than dropped:

- MLC560: `stream.input` is not a Kafka source;
- MLC561: the input's events are in a format the scorer cannot decode (JSON only);
- MLC562: a rollout stream mode cannot honour (any strategy but `rolling`, and any of the
  rollout's other settings: gates, steps, shadow, variants, ...);
- MLC563: a setting only an HTTP endpoint reads (`kserve`, `batching`, `slo`, `allowFrom`,
  `predictionLogSample`, `autoscaling.metric`/`target`);
- MLC564: a setting only KEDA reads (`autoscaling.minReplicas`/`maxReplicas`,
  `stream.lagPerReplica`) where the platform declares no KEDA, or beside a fixed `replicas`;
- MLC565: an output or dead-letter topic that is the input topic (the endpoint would score
  its own output, for ever);
- MLC566: a drift check or quality monitor on a stream endpoint, which writes no prediction
  log for them to read.
"""

from __future__ import annotations

from ...schema.serving import Endpoint
from ...schema.types import duration_seconds
from .. import ir
from .context import Context
from .streams import INGEST_FORMATS, check_bootstrap_servers, kafka_connection

NOT_A_KAFKA_SOURCE = "MLC560"
UNDECODABLE_EVENTS = "MLC561"
UNHONOURED_ROLLOUT = "MLC562"
HTTP_ONLY_SETTING = "MLC563"
KEDA_ONLY_SETTING = "MLC564"
SCORING_LOOP = "MLC565"
NO_PREDICTION_LOG = "MLC566"

# (field, ml.yaml key) of the endpoint that only an HTTP server reads
HTTP_ONLY = (("batching", "batching"), ("slo", "slo"), ("allow_from", "allowFrom"),
             ("prediction_log_sample", "predictionLogSample"))
# (field, ml.yaml key) of `rollout`, none of which a stream endpoint honours
ROLLOUT_SETTINGS = (("steps", "steps"), ("gates", "gates"), ("shadow", "shadow"),
                    ("variants", "variants"), ("assignment", "assignment"),
                    ("router", "router"), ("verdict", "verdict"),
                    ("auto_promote", "autoPromote"), ("shadow_first", "shadowFirst"))
DEFAULT_LAG_BATCHES = 10  # KEDA's lag per replica by default: ten batches


def check_stream_endpoint(ctx: Context, name: str, e: Endpoint) -> None:
    """Rollout and HTTP settings on a stream endpoint: refused, located."""
    path = ("serving", name)
    r = e.rollout
    if r.strategy != "rolling":
        ctx.error(UNHONOURED_ROLLOUT, f"endpoint `{name}` is a stream consumer: no request "
                  f"reaches it, so `strategy: {r.strategy}` has no traffic to split, mirror "
                  "or gate", (*path, "rollout", "strategy"),
                  help="remove `rollout:` (a new version replaces the consumers one pod at a "
                       "time), or serve the model online for a gated rollout")
    for field, key in ROLLOUT_SETTINGS:
        if field in r.model_fields_set:
            ctx.error(UNHONOURED_ROLLOUT, f"endpoint `{name}` is a stream consumer, which "
                      f"honours no `rollout.{key}`", (*path, "rollout", key),
                      help=f"remove `{key}:`")
    if e.kserve:
        ctx.error(HTTP_ONLY_SETTING, f"endpoint `{name}` is a stream consumer: KServe serves "
                  "HTTP requests, and none reach it", (*path, "kserve"),
                  help="remove `kserve: true`")
    for field, key in HTTP_ONLY:
        if field in e.model_fields_set:
            ctx.error(HTTP_ONLY_SETTING, f"endpoint `{name}` is a stream consumer: `{key}` "
                      "is read only by an HTTP endpoint", (*path, key),
                      help=f"remove `{key}:`" + (" (the batch is `stream.batchSize`, "
                                                 "`stream.linger`)" if key == "batching"
                                                 else ""))
    monitoring = ctx.project.monitoring
    watchers = [(("monitoring", "drift", n), "drift check") for n, d in
                sorted(monitoring.drift.items()) if d.endpoint == name]
    watchers += [(("monitoring", "quality", n), "quality monitor") for n, q in
                 sorted(monitoring.quality.items()) if q.endpoint == name]
    for where, what in watchers:
        ctx.error(NO_PREDICTION_LOG, f"{what} `{where[2]}` watches endpoint `{name}`, a stream "
                  "consumer, which writes no prediction log to check", (*where, "endpoint"),
                  help="watch an online endpoint of the same model (its prediction log)")
    for field in ("metric", "target"):
        if field in e.autoscaling.model_fields_set:
            ctx.error(HTTP_ONLY_SETTING, f"endpoint `{name}` is a stream consumer: it scales "
                      f"on its consumer group's lag, not on `autoscaling.{field}`",
                      (*path, "autoscaling", field),
                      help=f"remove `{field}:`; set the lag per replica with "
                           "`stream.lagPerReplica`")


def resolve_stream(ctx: Context, name: str, e: Endpoint, secrets: dict[str, ir.SecretRef]
                   ) -> ir.StreamScoring | None:
    s = e.stream
    assert s is not None, "the schema requires `stream` in stream mode"
    path = ("serving", name, "stream")
    sources = ctx.project.sources
    if not ctx.check_ref(s.input, sources, "source", (*path, "input"), "sources"):
        return None
    source = sources[s.input]
    if source.type != "kafka":
        ctx.error(NOT_A_KAFKA_SOURCE, f"endpoint `{name}` scores a stream, but source "
                  f"`{s.input}` is a {source.type} source, not a Kafka topic", (*path, "input"),
                  help="name a source of `type: kafka`, or score the source on a schedule "
                       "with `mode: batch`")
        return None
    if source.format not in INGEST_FORMATS:
        ctx.error(UNDECODABLE_EVENTS, f"endpoint `{name}` cannot decode the {source.format} "
                  f"events of source `{s.input}`: stream scoring reads JSON objects only",
                  (*path, "input"), help="publish the topic as JSON (`format: json` on the "
                  "source)")
        return None
    for key, topic in (("outputTopic", s.output_topic), ("deadLetterTopic",
                                                         s.dead_letter_topic)):
        if topic == source.topic:
            ctx.error(SCORING_LOOP, f"endpoint `{name}` would write to `{topic}`, the topic "
                      "it scores: every scored event would be scored again", (*path, key),
                      help="write to a topic of its own, e.g. `" + f"{topic}-scores`")
    if s.dead_letter_topic is not None and s.dead_letter_topic == s.output_topic:
        ctx.error(SCORING_LOOP, f"endpoint `{name}`: the dead-letter topic is the output "
                  "topic, so readers of the scores would get the unscorable events too",
                  (*path, "deadLetterTopic"), help="give the dead letters a topic of their own")
    keda = _autoscaling(ctx, name, e)
    spath = ("sources", s.input)
    servers = check_bootstrap_servers(ctx, source.bootstrap_servers,
                                      (*spath, "bootstrapServers"))
    kafka = kafka_connection(ctx, source, secrets, spath)
    if kafka is None or not servers:
        return None
    return ir.StreamScoring(
        input_source=s.input, kafka=kafka, output_topic=s.output_topic,
        dead_letter_topic=s.dead_letter_topic, key_field=s.key,
        consumer_group=s.consumer_group or f"{ctx.project.metadata.name}-{name}-score",
        start_from=s.start_from, batch_size=s.batch_size,
        linger_seconds=duration_seconds(s.linger),
        replicas=e.replicas or (max(1, e.autoscaling.min_replicas) if keda else 1),
        keda=keda, max_lag=s.max_lag, lag_for_seconds=int(duration_seconds(s.lag_for)))


def _autoscaling(ctx: Context, name: str, e: Endpoint) -> ir.StreamAutoscaling | None:
    """KEDA's ScaledObject where the platform declares KEDA and `replicas` is not fixed."""
    s = e.stream
    assert s is not None
    keda = ctx.project.platform.keda
    path = ("serving", name)
    keda_only = [(("autoscaling", key), f"autoscaling.{key}") for field, key in (
        ("min_replicas", "minReplicas"), ("max_replicas", "maxReplicas"))
        if field in e.autoscaling.model_fields_set]
    if "lag_per_replica" in s.model_fields_set:
        keda_only.append((("stream", "lagPerReplica"), "stream.lagPerReplica"))
    why = (None if keda is not None and e.replicas is None else
           "the platform declares no KEDA (`platform.keda`)" if keda is None else
           "`replicas` fixes the replica count")
    if why is not None:
        for where, key in keda_only:
            ctx.error(KEDA_ONLY_SETTING, f"endpoint `{name}`: only KEDA reads `{key}`, and "
                      f"{why}", (*path, *where),
                      help="declare KEDA with `platform: {keda: {}}`, or remove the setting "
                           "(a stream endpoint without KEDA runs `replicas` consumers, "
                           "default 1)" if keda is None else "remove `replicas:` to scale on "
                           "lag, or remove the setting")
        return None
    a = e.autoscaling
    return ir.StreamAutoscaling(
        min_replicas=a.min_replicas, max_replicas=a.max_replicas,
        lag_per_replica=s.lag_per_replica or s.batch_size * DEFAULT_LAG_BATCHES,
        polling_interval_seconds=int(duration_seconds(keda.polling_interval)),
        cooldown_period_seconds=int(duration_seconds(keda.cooldown_period)))

