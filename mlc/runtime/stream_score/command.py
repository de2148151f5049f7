"""The stream consumer: `python -m mlc.runtime stream-score --project P --endpoint E`.

It reads the resolved project, builds both Kafka clients' settings from the pod's
environment (config.py), serves its metrics on MLC_STREAM_METRICS_PORT, loads the model the
serving pods would load (MLC_MODEL_URI, else the endpoint's URI; serve/loader.py), with the
online server's settings (serve/settings.py: feature types, the online-feature lookup), and
scores until SIGTERM, when it finishes the batch in hand, flushes, commits and leaves the
group.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from mlc import stream_contract as contract

from .config import ConfigError, consumer_config, producer_config


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlc.runtime stream-score")
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--endpoint", required=True, help="the stream endpoint, as in ml.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from mlc.runtime.step import StepFailed, load_project

    try:
        project = load_project(args.project)
    except StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    endpoint = project.endpoints.get(args.endpoint)
    if endpoint is None or endpoint.stream is None:
        known = sorted(n for n, e in project.endpoints.items() if e.stream is not None)
        print(f"error: no stream endpoint `{args.endpoint}` in {args.project} (known: "
              f"{', '.join(known) or 'none'})", file=sys.stderr)
        return 2
    stream = endpoint.stream
    env = dict(os.environ)
    try:
        consumer_settings = consumer_config(endpoint.name, stream, env)
        producer_settings = producer_config(endpoint.name, stream, env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        from confluent_kafka import Consumer, Producer
    except ModuleNotFoundError as exc:
        print(f"error: the Kafka client is not installed here ({exc.name}): the image needs "
              "mlc[streams]", file=sys.stderr)
        return 1
    from prometheus_client import CollectorRegistry, start_http_server

    from mlc.runtime.serve.loader import ModelLoadError, load
    from mlc.runtime.serve.settings import settings_for_endpoint
    from mlc.runtime.serve.validation import Signature

    from .loop import EventRows, Model, ScoringFailed, StreamMetrics, StreamScorer

    settings = settings_for_endpoint(project, endpoint.name, env)
    registry = CollectorRegistry()
    metrics = StreamMetrics(endpoint.name, registry)
    start_http_server(int(env.get(contract.METRICS_PORT_ENV, contract.METRICS_PORT)),
                      registry=registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        loaded = load(settings.model_uri, settings.tracking_uri,
                      allow_pickle=settings.allow_pickle or None)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    online = None
    if settings.online_features:
        from mlc.runtime.serve.features import OnlineFeatures

        repo, service, keys = settings.online_features
        online = OnlineFeatures(repo, service, keys, loaded.features)
    rows = EventRows(Signature.build(loaded.features, settings.feature_types,
                                     max_rows=stream.batch_size), online)
    classes = (loaded.spec or {}).get("classes") if loaded.output_width > 1 else None
    model = Model(name=loaded.name, version=str(loaded.version), predict=loaded.predict,
                  classes=classes)
    scorer = StreamScorer(Consumer(consumer_settings), Producer(producer_settings), model,
                          rows, metrics, output_topic=stream.output_topic,
                          dead_letter_topic=stream.dead_letter_topic,
                          key_field=stream.key_field, batch_size=stream.batch_size,
                          linger_seconds=stream.linger_seconds, start_from=stream.start_from)
    logging.getLogger("mlc.stream").info(
        "scoring %s as group %s with %s version %s into %s", stream.kafka.topic,
        stream.consumer_group, model.name, model.version, stream.output_topic)
    try:
        scorer.run(stream.kafka.topic, stop)
    except ScoringFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
