"""The alerts of a Kafka ingestion (backends/streams/): its consumer group falls behind the
topic, or messages stop reaching the online store.

IngestConsumerLagHigh fires when the group has been more than `ingest.maxLag` messages
behind (summed over its partitions) for `ingest.lagFor`: features served online are then
that far behind the events. IngestMessagesFailing fires on any message that was not
written in the last 15 minutes (not JSON, a key or field missing, the store refusing).
"""

from __future__ import annotations

from mlc import metrics

from ...ir import Ingestion, ResolvedProject
from . import promql
from .alerts import Alert, Group, Scenario, Series
from .consumer_lag import ConsumerLag
from .rules import RuleSet, _by

FAILURE_WINDOW = 15 * 60


def ingest_rule_sets(project: ResolvedProject) -> list[RuleSet]:
    out = []
    for ingestion in project.ingestions.values():
        name = f"ingestion-{ingestion.k8s_name}"
        out.append(RuleSet(name, ingestion.origin, (
            Group(f"{name}-alerts", tuple(ingest_alerts(project, ingestion))),)))
    return out


def ingest_alerts(project: ResolvedProject, ingestion: Ingestion) -> list[Alert]:
    labels = {**promql.scope(project), "source": ingestion.source}
    lag = ConsumerLag(metrics.INGEST_LAG, labels, ingestion.max_lag, ingestion.lag_for_seconds)
    limit, hold = lag.limit, lag.hold
    failed_name = promql.series(metrics.INGEST_FAILED)
    failed = promql.selector(failed_name, labels)
    window = promql.duration(FAILURE_WINDOW)

    def failures(values: str) -> Scenario:
        return Scenario((Series(failed_name, {**labels, "reason": "schema"}, values),),
                        20 * 60)
    return [
        Alert(name="IngestConsumerLagHigh", severity="warning", for_seconds=hold,
              expr=lag.expr,
              summary=(f"Ingestion of {ingestion.source} is more than {limit} messages "
                       "behind its topic.",),
              description=(f"Consumer group {ingestion.consumer_group} has been more than "
                           f"{limit} messages behind topic {ingestion.kafka.topic} for "
                           f"{promql.duration(hold)}; the online features of "
                           f"{', '.join(ingestion.views)} are that far behind the events. "
                           "Add replicas (up to the topic's partitions) or check the "
                           "Deployment's logs for write retries.",),
              unhealthy=lag.unhealthy(), healthy=lag.healthy()),
        Alert(name="IngestMessagesFailing", severity="warning",
              expr=f"sum by ({_by(labels)}) (increase({failed}[{window}])) > 0",
              summary=(f"Messages of {ingestion.source} are not reaching the online store.",),
              description=(f"Over the last {window} some messages of topic "
                           f"{ingestion.kafka.topic} were not written to "
                           f"{', '.join(ingestion.views)}. The Deployment's logs name the "
                           "partition, offset and reason of each.",),
              unhealthy=((failures("0+0x10 1+1x10"), labels),),
              healthy=(failures("0+0x21"), failures("3+0x21"))),
    ]
