"""The ingestion process: `python -m mlc.runtime ingest --project P --source S`.

It reads the resolved project, builds the consumer's settings from the pod's environment
(config.py), opens the generated Feast repository (MLC_FEAST_REPO) and serves its metrics
on MLC_INGEST_METRICS_PORT until SIGTERM, when it finishes the batch in hand, commits and
leaves the group.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from mlc import ingest_contract as contract
from mlc import step_contract

from .config import ConfigError, consumer_config
from .loop import IngestMetrics, Ingestor, WriteFailed
from .messages import shapes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlc.runtime ingest")
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--source", required=True, help="the Kafka source, as in ml.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from mlc.runtime.step import StepFailed, load_project

    try:
        project = load_project(args.project)
    except StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ingestion = project.ingestions.get(args.source)
    if ingestion is None:
        print(f"error: no ingestion of source `{args.source}` in {args.project} (known: "
              f"{', '.join(sorted(project.ingestions)) or 'none'})", file=sys.stderr)
        return 2
    env = dict(os.environ)
    try:
        config = consumer_config(ingestion, env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    repo = env.get(step_contract.FEAST_REPO_ENV)
    if not repo:
        print(f"error: {step_contract.FEAST_REPO_ENV} is not set", file=sys.stderr)
        return 1

    try:
        from confluent_kafka import Consumer
    except ModuleNotFoundError as exc:
        print(f"error: the Kafka client is not installed here ({exc.name}): the image needs "
              "mlc[streams]", file=sys.stderr)
        return 1
    from prometheus_client import CollectorRegistry, start_http_server

    write = feast_writer(Path(repo), project.sources[args.source].timestamp_field)
    registry = CollectorRegistry()
    metrics = IngestMetrics(args.source, ingestion.views, registry)
    port = int(env.get(contract.METRICS_PORT_ENV, contract.METRICS_PORT))
    start_http_server(port, registry=registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ingestor = Ingestor(Consumer(config), write, shapes(project, ingestion),
                        project.sources[args.source].timestamp_field, metrics,
                        batch_size=ingestion.batch_size, start_from=ingestion.start_from)
    logging.getLogger("mlc.ingest").info(
        "consuming %s as group %s into %s", ingestion.kafka.topic, ingestion.consumer_group,
        ", ".join(ingestion.views))
    try:
        ingestor.run(ingestion.kafka.topic, stop)
    except WriteFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def feast_writer(repo: Path, timestamp_field: str):
    """Rows of one view -> Feast's online write, the call Feast's own stream processor makes
    for a stream-fed view (a push source's `push` ends in the same call)."""
    import pandas as pd
    from feast import FeatureStore

    from mlc.runtime import feast_connection

    feast_connection.prepare(repo)
    store = FeatureStore(repo_path=str(repo))

    def write(view: str, rows: list[dict[str, object]]) -> None:
        frame = pd.DataFrame(rows)
        frame[timestamp_field] = pd.to_datetime(frame[timestamp_field], utc=True)
        store.write_to_online_store(view, frame)

    return write
