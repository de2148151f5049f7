"""The alerts of a `mode: stream` endpoint (backends/streams/scoring.py): its consumer group
falls behind the input topic, its batches fail, or events cannot be scored.

StreamConsumerLagHigh fires when the group has been more than `stream.maxLag` events behind
(summed over its partitions) for `stream.lagFor`: the scores are then that far behind the
events. StreamScoringFailing fires on any batch that failed in the last 15 minutes (the
brokers refused the output, the model raised): the consumer restarts and re-reads it, so a
failure that repeats stalls the partition. StreamPoisonEvents fires on any event that could
not be scored in the last 15 minutes, dead-lettered or skipped.
"""

from __future__ import annotations

from mlc import metrics

from ...ir import Endpoint, ResolvedProject
from . import promql
from .alerts import Alert, Group, Scenario, Series
from .consumer_lag import ConsumerLag
from .rules import RuleSet, _by

WINDOW = 15 * 60


def stream_rule_sets(project: ResolvedProject) -> list[RuleSet]:
    out = []
    for name in sorted(project.endpoints):
        ep = project.endpoints[name]
        if ep.mode == "stream" and ep.stream is not None:
            rule_set = f"stream-{ep.k8s_name}"
            out.append(RuleSet(rule_set, ep.origin, (
                Group(f"{rule_set}-alerts", tuple(stream_alerts(project, ep))),)))
    return out


def stream_alerts(project: ResolvedProject, ep: Endpoint) -> list[Alert]:
    s = ep.stream
    assert s is not None
    labels = {**promql.scope(project), "endpoint": ep.name}
    lag = ConsumerLag(metrics.STREAM_LAG, labels, s.max_lag, s.lag_for_seconds)
    limit, hold = lag.limit, lag.hold
    window = promql.duration(WINDOW)

    def counter(metric, extra: dict[str, str]):
        name = promql.series(metric)

        def scenario(values: str) -> Scenario:
            return Scenario((Series(name, {**labels, **extra}, values),), 20 * 60)
        return promql.selector(name, labels), scenario

    failed, failures = counter(metrics.STREAM_FAILED, {"reason": "produce"})
    poison, poisoned = counter(metrics.STREAM_POISON, {"reason": "schema",
                                                        "action": "dead_letter"})
    where = (f"to topic {s.dead_letter_topic}" if s.dead_letter_topic else
             "nowhere (`onPoison: skip`)")
    return [
        Alert(name="StreamConsumerLagHigh", severity="warning", for_seconds=hold,
              expr=lag.expr,
              summary=(f"Stream endpoint {ep.name} is more than {limit} events behind its "
                       "topic.",),
              description=(f"Consumer group {s.consumer_group} has been more than {limit} "
                           f"events behind topic {s.kafka.topic} for "
                           f"{promql.duration(hold)}; the scores in {s.output_topic} are "
                           "that far behind the events. Add replicas (up to the topic's "
                           "partitions) or check the Deployment's logs.",),
              unhealthy=lag.unhealthy(), healthy=lag.healthy()),
        Alert(name="StreamScoringFailing", severity="critical",
              expr=f"sum by ({_by(labels)}) (increase({failed}[{window}])) > 0",
              summary=(f"Batches of stream endpoint {ep.name} are failing.",),
              description=(f"Over the last {window} batches of topic {s.kafka.topic} failed "
                           "before their offsets were committed (the brokers refused the "
                           f"output to {s.output_topic}, or the model raised); the consumer "
                           "restarts and re-reads them. The Deployment's logs say why.",),
              unhealthy=((failures("0+0x10 1+1x10"), labels),),
              healthy=(failures("0+0x21"), failures("3+0x21"))),
        Alert(name="StreamPoisonEvents", severity="warning",
              expr=f"sum by ({_by(labels)}) (increase({poison}[{window}])) > 0",
              summary=(f"Events of topic {s.kafka.topic} cannot be scored by {ep.name}.",),
              description=(f"Over the last {window} some events of topic {s.kafka.topic} "
                           f"could not be scored and went {where}. The Deployment's logs "
                           "name the partition, offset and reason of each.",),
              unhealthy=((poisoned("0+0x10 1+1x10"), labels),),
              healthy=(poisoned("0+0x21"), poisoned("3+0x21"))),
    ]
