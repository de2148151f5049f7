"""The consumer's and the producer's librdkafka settings, from the IR's `StreamScoring` and
the pod's env (the credentials: ingest/config.py's, which both clients share).

The consumer's own periodic commit is off: the loop commits after the batch's output is
flushed (loop.py). The producer is idempotent and waits for every in-sync replica, so a
flushed event is on the brokers, once per send.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlc.compiler import ir
from mlc.runtime.ingest.config import ConfigError, connection_config

__all__ = ["ConfigError", "consumer_config", "producer_config"]


def consumer_config(endpoint: str, s: ir.StreamScoring,
                    env: Mapping[str, str]) -> dict[str, object]:
    return {
        "group.id": s.consumer_group,
        "client.id": f"mlc-stream-{endpoint}",
        "enable.auto.commit": False,
        "auto.offset.reset": s.start_from,
        **connection_config(s.kafka, env),
    }


def producer_config(endpoint: str, s: ir.StreamScoring,
                    env: Mapping[str, str]) -> dict[str, object]:
    return {
        "client.id": f"mlc-stream-{endpoint}",
        "enable.idempotence": True,
        "acks": "all",
        # the loop flushes every batch: librdkafka need not hold messages back for more
        "linger.ms": 5,
        **connection_config(s.kafka, env),
    }
