"""Stream scoring speed: the consumer loop's events per CPU second by batch size, one run.

    python bench/bench_stream_score.py [--events 20000] [--rounds 5] [--sizes 1,10,100,1000]

A real mlc model (8 features, one hidden layer of 32, random weights, loaded as the
serving runtime loads it: serve/loader.py's load_folder, one torch thread) scores JSON
events through the real loop (mlc/runtime/stream_score/loop.py: decode, the online
server's row checks, one model call per batch, a JSON scored event per input, the dead
letter of every 100th event, which is poison), with an in-memory consumer and producer in
place of librdkafka (so the figures are the loop's own, without the brokers' network).

Per batch size it prints the median and range over the rounds of events per CPU second
(process time: the loop runs in this process only) and wall events per second, and the
ratio against batch size 1, the baseline: one model call per event, what a consumer that
scores each message as it comes does. The sizes run in rotating order, each round.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES = [f"f{i}" for i in range(8)]


class _TP:
    def __init__(self, offset):
        self.topic, self.partition, self.offset = "in", 0, offset


class _Message:
    __slots__ = ("_value", "_offset")

    def __init__(self, value: bytes, offset: int):
        self._value, self._offset = value, offset

    def error(self):
        return None

    def value(self):
        return self._value

    def key(self):
        return None

    def partition(self):
        return 0

    def offset(self):
        return self._offset


class MemoryConsumer:
    def __init__(self, values: list[bytes]):
        self.messages = [_Message(v, i) for i, v in enumerate(values)]
        self.position_ = 0
        self.commits = 0

    def subscribe(self, topics):
        pass

    def consume(self, num_messages=1, timeout=-1):
        out = self.messages[self.position_:self.position_ + num_messages]
        self.position_ += len(out)
        return out

    def commit(self, asynchronous=True):
        self.commits += 1

    def assignment(self):
        return [_TP(0)]

    def position(self, partitions):
        return [_TP(self.position_)]

    def get_watermark_offsets(self, partition, timeout=None, cached=False):
        return 0, len(self.messages)

    def close(self):
        pass


class MemoryProducer:
    def __init__(self):
        self.pending: list = []
        self.delivered = 0

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None):
        self.pending.append(on_delivery)

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout=-1):
        for callback in self.pending:
            callback(None, None)
        self.delivered += len(self.pending)
        self.pending = []
        return 0


def make_model(folder: Path):
    import torch

    from mlc.runtime import model_format
    from mlc.runtime.serve.loader import load_folder

    torch.set_num_threads(1)
    n = len(FEATURES)
    spec = model_format.make_spec(task="classification", features=FEATURES,
                                  feature_refs=FEATURES, hidden_layers=[32], dropout=0.0,
                                  fill=[0.0] * n, mean=[0.0] * n, std=[1.0] * n, label="y",
                                  classes=[0, 1])
    torch.manual_seed(0)
    model_format.save_model(folder, spec, model_format.build_module(spec).state_dict())
    return load_folder(folder, name="bench", version="1", alias=None, trained_at=None)


def events(count: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        if i % 100 == 99:
            out.append(b'{"id": "poison", "f0": "not a number"}')
            continue
        body = {"id": f"e{i}", **{f: round(float(v), 4) for f, v in zip(
            FEATURES, rng.normal(size=len(FEATURES)), strict=True)}}
        out.append(json.dumps(body).encode())
    return out


def run_once(loaded, values: list[bytes], batch_size: int) -> tuple[float, float]:
    from prometheus_client import CollectorRegistry

    from mlc.runtime.serve.validation import Signature
    from mlc.runtime.stream_score.loop import EventRows, Model, StreamMetrics, StreamScorer

    consumer, producer = MemoryConsumer(values), MemoryProducer()
    scorer = StreamScorer(
        consumer, producer, Model(loaded.name, str(loaded.version), loaded.predict, None),
        EventRows(Signature.build(loaded.features, {}, max_rows=batch_size)),
        StreamMetrics("bench", CollectorRegistry()), output_topic="out",
        dead_letter_topic="dead", key_field="id", batch_size=batch_size, linger_seconds=0.0)
    cpu, wall = time.process_time(), time.perf_counter()
    while scorer.step():
        pass
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert producer.delivered == len(values), (producer.delivered, len(values))
    return cpu, wall


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1,10,100,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    # the loop logs every poison event, as in a pod; here to nowhere, not to the terminal
    quiet = logging.getLogger("mlc.stream")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    with tempfile.TemporaryDirectory() as tmp:
        loaded = make_model(Path(tmp) / "model")
        values = events(args.events)
        run_once(loaded, values[:2000], 100)  # warm-up: imports, torch's first calls
        cpu: dict[int, list[float]] = {s: [] for s in sizes}
        wall: dict[int, list[float]] = {s: [] for s in sizes}
        for r in range(args.rounds):
            for s in sizes[r % len(sizes):] + sizes[:r % len(sizes)]:
                c, w = run_once(loaded, values, s)
                cpu[s].append(args.events / c)
                wall[s].append(args.events / w)
    base = statistics.median(cpu[sizes[0]])
    print(f"{args.events} events (1% poison, dead-lettered), {args.rounds} rounds; "
          "events per second, median [min-max]")
    print(f"{'batch':>6} {'per CPU s':>26} {'per wall s':>26} {'CPU x vs ' + str(sizes[0]):>10}")
    for s in sizes:
        c, w = cpu[s], wall[s]
        print(f"{s:>6} {statistics.median(c):>10.0f} [{min(c):>6.0f}-{max(c):>6.0f}]"
              f" {statistics.median(w):>10.0f} [{min(w):>6.0f}-{max(w):>6.0f}]"
              f" {statistics.median(c) / base:>9.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
