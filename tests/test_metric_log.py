"""Per-step metric logging: every value reaches MLflow with its step, through a process or a
thread, and the SQL store's fast path stores exactly what MLflow's log_batch would."""

from __future__ import annotations

import math

import pytest
import torch

from mlc.runtime.train import metric_log, tracking

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client_for(uri)
    return uri, client, tracking.ensure_experiment(client, "t")


def test_background_logger_sends_every_value_with_its_step(store):
    uri, client, experiment = store
    for sink in (metric_log.ProcessSink(uri), metric_log.ThreadSink(client)):
        run = client.create_run(experiment)
        logger = metric_log.BackgroundLogger(sink, run.info.run_id, interval=0.01,
                                             stack_every=7)
        for step in range(1, 2501):
            logger.log("loss", torch.tensor(1.0 / step), step)
            logger.log("lr", 0.5, step)
        logger.close()
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(1, 2501))
        assert {m.step: m.value for m in history}[4] == pytest.approx(0.25)
        assert len(client.get_metric_history(run.info.run_id, "lr")) == 2500
        # a store that fails is reported when the logger closes, not silently dropped
        logger = metric_log.BackgroundLogger(sink, "no-such-run")
        logger.log("loss", 1.0, 1)
        with pytest.raises(RuntimeError, match="could not be logged"):
            logger.close()
        sink.stop()


def stored(client, run_id: str) -> tuple[dict, dict]:
    """A run's whole metric history and latest values, as comparable data."""
    latest = client.get_run(run_id).data.metrics
    history = {key: sorted((m.step, m.timestamp, repr(m.value))
                           for m in client.get_metric_history(run_id, key)) for key in latest}
    return history, {key: repr(value) for key, value in latest.items()}


def writers(client, experiment):
    """The fast path and MLflow's log_batch, each writing to a run of its own."""
    fast, plain = metric_log.MetricWriter(client), metric_log.MetricWriter(client)
    plain.bulk = None
    assert fast.bulk is not None, "the pinned MLflow's SQL store should take the fast path"
    return [(w, client.create_run(experiment).info.run_id) for w in (fast, plain)]


def test_fast_path_stores_what_log_batch_stores(store):
    _, client, experiment = store
    t = 1_700_000_000_000
    batches = [
        # steps out of order, two keys, NaN and both infinities, a value repeated exactly
        [("loss", 0.5, 3, t), ("loss", 0.7, 1, t + 1), ("acc", 0.9, 1, t + 1),
         ("loss", math.nan, 4, t + 2), ("acc", math.inf, 2, t + 2), ("acc", -math.inf, 3, t + 3),
         ("loss", 0.5, 3, t)],
        # an older step after a newer one: the latest value must stay step 4's
        [("loss", 0.1, 2, t + 9), ("acc", 0.95, 3, t + 9), ("auc", 0.8, 0, t + 9)],
        # same step and time as a stored value, larger value: MLflow's tie-break picks it
        [("acc", 0.99, 3, t + 9)],
    ]
    results = []
    for writer, run_id in writers(client, experiment):
        for batch in batches:
            writer.write(run_id, batch)
        results.append(stored(client, run_id))
    fast, plain = results
    assert fast == plain
    history, latest = fast
    assert len(history["loss"]) == 4 and latest["acc"] == repr(0.99)
    assert writers(client, experiment)[0][0].bulk is not None


def test_fast_path_counts_its_batches_and_splits_at_mlflows_limit(store):
    _, client, experiment = store
    (writer, run_id), _ = writers(client, experiment)
    writer.write(run_id, [("loss", float(i), i, 1_000 + i) for i in range(2500)])
    assert writer.bulk_batches == 3  # 1000 + 1000 + 500
    assert len(client.get_metric_history(run_id, "loss")) == 2500


def test_a_batch_sent_twice_falls_back_to_log_batch_and_is_stored_once(store):
    _, client, experiment = store
    results = []
    batch = [("loss", 0.25, 1, 5_000), ("loss", 0.125, 2, 5_001)]
    for writer, run_id in writers(client, experiment):
        writer.write(run_id, batch)
        writer.write(run_id, batch + [("loss", 0.0625, 3, 5_002)])  # a retried hand-over
        results.append(stored(client, run_id))
        if writer.bulk is not None:
            assert writer.bulk_batches == 1  # the second batch went through log_batch
    assert results[0] == results[1]
    assert len(results[0][0]["loss"]) == 3


@pytest.mark.parametrize("case", ["deleted run", "no such run", "bad name"])
def test_errors_are_mlflows_own(store, case):
    from mlflow.exceptions import MlflowException

    _, client, experiment = store
    messages = []
    for writer, run_id in writers(client, experiment):
        key = "loss"
        if case == "deleted run":
            client.delete_run(run_id)
        elif case == "no such run":
            run_id = "0" * 32
        else:
            key = "../loss"
        with pytest.raises(MlflowException) as raised:
            writer.write(run_id, [(key, 1.0, 1, 1)])
        messages.append(str(raised.value).replace(run_id, "RUN"))
        assert not getattr(writer, "bulk_batches", 0)
    assert messages[0] == messages[1]
