'''The test's stand-in for the brokers: a `confluent_kafka` module of the library's interface
(Consumer, Producer, TopicPartition, KafkaException), written first on a process's path
(`install`). Only the Kafka client is replaced, at the library boundary; the runtime under
test is the real one.

- Consumer serves the values (or `{"key", "value"}` objects) of $FAKE_KAFKA_MESSAGES from
  the group's committed offset on, and records in $FAKE_KAFKA_RECORD what the runtime did:
  its settings, the topics it subscribed, every commit (and how many produced messages had
  been flushed when it came), whether it closed. A later process of the same group resumes
  at the committed offset, as a restarted pod does.
- Producer holds what is produced until `flush`, then appends it to $FAKE_KAFKA_PRODUCED and
  reports each delivery; with $FAKE_KAFKA_CRASH_AT_FLUSH=N the process dies at its N-th
  flush, before anything of that batch is delivered (as a killed pod's buffer is lost); with
  $FAKE_KAFKA_REFUSE_TOPIC=T the brokers refuse every message to topic T (its delivery
  report carries the error, nothing of it is stored).

`load()` gives the module in this process, for tests of the loop itself.
'''

from __future__ import annotations

from pathlib import Path
from types import ModuleType

SOURCE = '''\
import json, os, time

OFFSET_INVALID = -1001
_FLUSHED = [0]  # messages this process delivered: what a commit may follow


class KafkaException(Exception):
    pass


class TopicPartition:
    def __init__(self, topic, partition=0, offset=OFFSET_INVALID):
        self.topic, self.partition, self.offset = topic, partition, offset


class _Message:
    def __init__(self, topic, offset, value, key=None, headers=None):
        self._topic, self._offset, self._value = topic, offset, value
        self._key, self._headers = key, headers

    def error(self):
        return None

    def value(self):
        return None if self._value is None else self._value.encode()

    def key(self):
        return None if self._key is None else self._key.encode()

    def headers(self):
        return self._headers

    def topic(self):
        return self._topic

    def partition(self):
        return 0

    def offset(self):
        return self._offset


def _save(path, record):
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)


class Consumer:
    def __init__(self, config):
        self.messages = [m if isinstance(m, dict) else {"value": m}
                         for m in json.load(open(os.environ["FAKE_KAFKA_MESSAGES"]))]
        path = os.environ["FAKE_KAFKA_RECORD"]
        before = json.load(open(path)) if os.path.exists(path) else {}
        self.position_ = before.get("committed", 0)  # the group resumes where it committed
        self.record = {"config": config, "commits": before.get("commits", []),
                       "commit_log": before.get("commit_log", []),
                       "committed": self.position_, "closed": False,
                       "starts": before.get("starts", 0) + 1}
        self._save()

    def _save(self):
        _save(os.environ["FAKE_KAFKA_RECORD"], self.record)

    def subscribe(self, topics):
        self.topic = topics[0]
        self.record["subscribed"] = topics
        self._save()

    def consume(self, num_messages=1, timeout=-1):
        batch = self.messages[self.position_:self.position_ + num_messages]
        if not batch:
            time.sleep(min(timeout, 0.05))
        out = [_Message(self.topic, self.position_ + i, m.get("value"), m.get("key"))
               for i, m in enumerate(batch)]
        self.position_ += len(batch)
        return out

    def commit(self, asynchronous=True):
        self.record["commits"].append(self.position_)
        self.record["commit_log"].append({"offset": self.position_, "flushed": _FLUSHED[0]})
        self.record["committed"] = self.position_
        self._save()

    def assignment(self):
        return [TopicPartition(self.topic, 0)]

    def position(self, partitions):
        return [TopicPartition(p.topic, p.partition, self.position_) for p in partitions]

    def get_watermark_offsets(self, partition, timeout=None, cached=False):
        return 0, len(self.messages)

    def close(self):
        self.record["closed"] = True
        self._save()


class Producer:
    def __init__(self, config):
        self.config = config
        self.pending = []
        self.flushes = 0
        path = os.environ["FAKE_KAFKA_PRODUCED"]
        self.record = json.load(open(path)) if os.path.exists(path) else {"messages": []}
        self.record["config"] = config
        _save(path, self.record)

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None,
                **_kwargs):
        self.pending.append((topic, value, key, headers, on_delivery))

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout=-1):
        self.flushes += 1
        if os.environ.get("FAKE_KAFKA_CRASH_AT_FLUSH") == str(self.flushes):
            os._exit(70)  # the pod is killed with the batch's output still in its buffer
        text = lambda b: None if b is None else (b.decode() if isinstance(b, bytes) else b)
        refused = os.environ.get("FAKE_KAFKA_REFUSE_TOPIC")
        for topic, value, key, headers, on_delivery in self.pending:
            if topic == refused:
                continue
            self.record["messages"].append({
                "topic": topic, "value": text(value), "key": text(key),
                "headers": {k: text(v) for k, v in (headers or [])}})
        _save(os.environ["FAKE_KAFKA_PRODUCED"], self.record)
        for topic, value, key, headers, on_delivery in self.pending:
            if on_delivery is not None:
                on_delivery(KafkaException(f"topic {topic}: not authorized") if topic == refused
                            else None, None)
        _FLUSHED[0] += len(self.pending)
        self.pending = []
        return 0
'''


def load() -> ModuleType:
    """The module, loaded in this process under its own name (the real client, if any, is
    left alone in sys.modules)."""
    module = ModuleType("fake_confluent_kafka")
    exec(compile(SOURCE, "fake_confluent_kafka", "exec"), module.__dict__)
    return module


def install(folder: Path) -> Path:
    """The module written under `folder`; put `folder` first on PYTHONPATH."""
    (folder / "confluent_kafka").mkdir(parents=True, exist_ok=True)
    (folder / "confluent_kafka" / "__init__.py").write_text(SOURCE)
    return folder
