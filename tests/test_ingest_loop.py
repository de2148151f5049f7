"""The ingestion loop's guarantees, with a stand-in for the Kafka client's interface only:
at least once (no commit before the write; a refused write is retried, then the process
fails uncommitted), bad messages counted by reason and passed over, lag per partition, and
what resolve refuses or warns about. The real client and Feast: tests/test_streams_ingest.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment

from .conftest import write_project
from .test_streams_ingest import ML_YAML

prometheus_client = pytest.importorskip("prometheus_client")

from mlc.runtime.ingest.loop import IngestMetrics, Ingestor, WriteFailed  # noqa: E402
from mlc.runtime.ingest.messages import BadMessage, ViewShape, decode  # noqa: E402

SHAPES = [ViewShape("user_clicks", {"user_id": "int64", "clicks": "int64", "spend": "float64"})]


@dataclass
class TP:
    topic: str
    partition: int
    offset: int = -1001


class Msg:
    def __init__(self, value, partition=0, error=None):
        self._value, self._partition, self._error = value, partition, error

    def value(self):
        return self._value

    def error(self):
        return self._error

    def partition(self):
        return self._partition

    def offset(self):
        return 0


class Client:
    """confluent_kafka.Consumer's methods, over a list of batches."""

    def __init__(self, batches, partitions=(0,), high=10):
        self.batches, self.partitions, self.high = list(batches), list(partitions), high
        self.commits, self.positions = 0, {p: -1001 for p in partitions}

    def consume(self, num_messages, timeout):
        return self.batches.pop(0) if self.batches else []

    def commit(self, asynchronous=True):
        self.commits += 1

    def assignment(self):
        return [TP("t", p) for p in self.partitions]

    def position(self, tps):
        return [TP(tp.topic, tp.partition, self.positions[tp.partition]) for tp in tps]

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        return 2, self.high


def _ingestor(client, write, **kw):
    registry = prometheus_client.CollectorRegistry()
    metrics = IngestMetrics("clicks", ["user_clicks"], registry)
    return Ingestor(client, write, SHAPES, "ts", metrics, batch_size=10, sleep=lambda s: None,
                    **kw), registry


def _value(registry, name, **labels):
    return registry.get_sample_value(name, {"source": "clicks", **labels})


def good(user: int) -> Msg:
    return Msg(f'{{"user_id": {user}, "ts": 1767348000, "clicks": 1, "spend": 2}}'.encode())


def test_a_refused_write_is_retried_then_fails_without_a_commit():
    calls = []

    def write(view, rows):
        calls.append(len(rows))
        raise ConnectionError("store down")

    client = Client([[good(1), good(2)]])
    ingestor, registry = _ingestor(client, write)
    with pytest.raises(WriteFailed, match="refused 2 rows of user_clicks"):
        ingestor.step()
    assert calls == [2, 2, 2, 2] and client.commits == 0
    assert _value(registry, "mlc_ingest_messages_failed_total", reason="write") == 2


def test_a_write_that_recovers_is_committed_once():
    attempts = []

    def write(view, rows):
        attempts.append(view)
        if len(attempts) == 1:
            raise ConnectionError("blip")

    client = Client([[good(1)], []])
    ingestor, registry = _ingestor(client, write)
    assert ingestor.step() == 1 and ingestor.step() == 0
    assert client.commits == 1
    assert _value(registry, "mlc_ingest_rows_pushed_total", view="user_clicks") == 1


def test_bad_messages_are_counted_by_reason_and_passed_over():
    class Error:
        def fatal(self):
            return False

    written = []
    client = Client([[Msg(b"{"), Msg(b'{"user_id": 1}'), Msg(None, error=Error()), good(3)]])
    ingestor, registry = _ingestor(client, lambda view, rows: written.extend(rows))
    ingestor.step()
    assert [r["user_id"] for r in written] == [3] and client.commits == 1
    for reason, n in (("decode", 1), ("schema", 1), ("kafka", 1), ("write", 0)):
        assert _value(registry, "mlc_ingest_messages_failed_total", reason=reason) == n
    assert _value(registry, "mlc_ingest_messages_consumed_total") == 3


def test_lag_per_partition_and_revoked_partitions_leave():
    client = Client([[], []], partitions=(0, 1), high=10)
    client.positions = {0: 4, 1: -1001}
    ingestor, registry = _ingestor(client, lambda v, r: None, start_from="earliest")
    ingestor.step()
    assert _value(registry, "mlc_ingest_consumer_lag", partition="0") == 6
    assert _value(registry, "mlc_ingest_consumer_lag", partition="1") == 8  # from low (2)
    client.partitions, client.positions = [0], {0: 10}
    ingestor.step()
    assert _value(registry, "mlc_ingest_consumer_lag", partition="0") == 0
    assert _value(registry, "mlc_ingest_consumer_lag", partition="1") is None


def test_a_new_group_starting_at_the_end_is_not_behind():
    client = Client([[]], partitions=(0,), high=10)
    ingestor, registry = _ingestor(client, lambda v, r: None, start_from="latest")
    ingestor.step()
    assert _value(registry, "mlc_ingest_consumer_lag", partition="0") == 0


@pytest.mark.parametrize(("body", "reason"), [
    (b"[1]", "decode"), (b'{"user_id": true, "ts": 1, "clicks": 1, "spend": 1}', "schema"),
    (b'{"user_id": 1, "ts": "yesterday", "clicks": 1, "spend": 1}', "schema"),
    (b'{"user_id": 1, "ts": 1, "clicks": 1.5, "spend": 1}', "schema"),
    (b'{"user_id": 1, "ts": 1, "clicks": 1, "spend": null}', "schema"),
])
def test_messages_that_do_not_fit_the_view(body, reason):
    with pytest.raises(BadMessage) as caught:
        decode(body, SHAPES, "ts")
    assert caught.value.reason == reason


def test_a_message_becomes_the_views_typed_row():
    (row,) = decode(b'{"user_id": 1, "ts": "2026-01-02T10:00:00", "clicks": 2, "spend": 3, '
                    b'"extra": "ignored"}', SHAPES, "ts").values()
    assert row["spend"] == 3.0 and isinstance(row["spend"], float)
    assert row["ts"].isoformat() == "2026-01-02T10:00:00+00:00"
    assert set(row) == {"user_id", "clicks", "spend", "ts"}


def _resolve(tmp_path, text: str, overlay: str | None = None):
    files = {"ml.yaml": text}
    if overlay is not None:
        files["environments/prod.yaml"] = overlay
    root = write_project(tmp_path, files)
    diags = Diagnostics()
    project = check_environment(root, "prod" if overlay is not None else "default", diags)
    return project, diags


def test_kafka_settings_no_online_view_reads_are_a_warning(tmp_path):
    text = ML_YAML + "    online: false\n"  # the last key of the one feature view
    project, diags = _resolve(tmp_path, text)
    assert project is not None and project.ingestions == {}
    assert [d.code for d in diags.warnings] == ["MLC572"]


def test_sasl_without_tls_is_allowed_in_development_only(tmp_path):
    text = ML_YAML.replace(
        "      tls: {caSecret: kafka-ca, certSecret: kafka-cert, keySecret: kafka-key}\n", "")
    project, diags = _resolve(tmp_path, text)
    assert project is not None and not diags.errors
    assert project.ingestions["clicks"].kafka.security_protocol == "SASL_PLAINTEXT"
    production = text.replace("  development: true\n", "  development: false\n")
    project, diags = _resolve(tmp_path / "prod", production)
    assert project is None and "MLC570" in [d.code for d in diags.errors]


def test_the_ingestion_is_priced_as_always_on_replicas(tmp_path):
    from mlc.compiler.cost.estimate import HOURS_PER_MONTH, estimate
    from mlc.schema.types import quantity_value

    project, _ = _resolve(tmp_path, ML_YAML.replace("batchSize: 3,", "batchSize: 3, replicas: 2,"))
    assert project is not None
    ir = project.model_dump(mode="json")
    (line,) = [x for x in estimate(ir).lines if x.category == "ingestion"]
    requests, prices = ir["hardware"]["default"]["requests"], ir["platform"]["cost"]
    hourly = (quantity_value(requests["cpu"]) * prices["cpu_core_hour"]
              + quantity_value(requests["memory"]) / 2 ** 30 * prices["memory_gib_hour"])
    assert line.subject == "sources.clicks" and hourly > 0
    assert line.low == line.high == pytest.approx(2 * HOURS_PER_MONTH * hourly)


def test_the_command_refuses_an_unknown_source_and_a_missing_secret(tmp_path, capsys,
                                                                    monkeypatch):
    from mlc.runtime.ingest import command

    project, _ = _resolve(tmp_path / "p", ML_YAML)
    path = tmp_path / "project.json"
    path.write_text(project.model_dump_json())
    assert command.main(["--project", str(path), "--source", "events"]) == 2
    assert "known: clicks" in capsys.readouterr().err
    monkeypatch.delenv("MLC_KAFKA_SASL_PASSWORD", raising=False)
    monkeypatch.setenv("MLC_KAFKA_SASL_USERNAME", "ingest")
    assert command.main(["--project", str(path), "--source", "clicks"]) == 1
    assert "MLC_KAFKA_SASL_PASSWORD is not set" in capsys.readouterr().err
