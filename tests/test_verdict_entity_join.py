"""Labels keyed by an entity and a time, joined to the prediction log as of the label's time.

The log is written by the serving runtime's own writer (mlc/runtime/prediction_log.py), which
records each request's entity keys; the labels arrive late and out of order. The join's
result is compared with a table worked out by hand from the rule in docs/shadow-and-ab.md: a
label joins the latest prediction for its entity at or before the label's time, at most
`within` earlier; a prediction several labels reach keeps the latest.
"""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas", reason="the verdict runtime needs pandas (mlc[drift])")
from mlc.runtime.prediction_log import (  # noqa: E402
    MAX_KEY_CHARS,
    REQUEST_ID_COLUMN,
    PredictionLogWriter,
    read_log,
)
from mlc.runtime.verdict.join import (  # noqa: E402
    LABEL_COLUMN,
    JoinError,
    labelled_predictions,
)

T0 = 1_750_000_000.0  # a fixed instant: no clock in the expected table
HOUR = 3600.0


def test_the_writer_logs_entity_keys_typed_and_bounded(tmp_path):
    writer = PredictionLogWriter(str(tmp_path), ["x"], 1.0,
                                 entity_keys={"customer_id": "int64", "shop": "string",
                                              "x": "int64"})
    long = "s" * (MAX_KEY_CHARS + 1)
    rows = np.zeros((5, 1))
    writer.log(rows, np.zeros(5), "1", now=T0, request={"instances": [
        {"x": 0, "customer_id": 7, "shop": "a"},
        {"x": 0, "customer_id": "8", "shop": 9},  # an id sent as text / a number: typed
        {"x": 0, "customer_id": True, "shop": long},  # a boolean is no id; too long a key
        {"x": 0, "customer_id": "1e3", "shop": {"nested": 1}},
        {"x": 0}]})  # not sent
    writer.log(np.zeros((2, 1)), np.zeros(2), "1", now=T0 + 1,
               request={"inputs": {"x": [0, 0], "customer_id": [3, 4], "shop": "z"}})
    writer.log(np.zeros((1, 1)), np.zeros(1), "1", now=T0 + 2, request=None)  # OIP
    writer.log(np.zeros((1, 1)), np.zeros(1), "1", now=T0 + 3,
               request={"x": 0, "customer_id": 2 ** 63})  # past int64
    writer.close()
    log = read_log(str(tmp_path)).sort_values("timestamp", kind="stable")
    # a key that is also a model input is logged once, as the input
    assert list(log.columns[-2:]) == ["customer_id", "shop"]
    assert [None if pd.isna(v) else int(v) for v in log["customer_id"]] == [
        7, 8, None, None, None, 3, 4, None, None]
    assert log["shop"].tolist() == ["a", "9", None, None, None, "z", "z", None, None]


def logged(tmp_path) -> pd.DataFrame:
    """Seven predictions of one variant; hours after T0 in `at`."""
    writer = PredictionLogWriter(str(tmp_path), ["x"], 1.0, variant="control",
                                 entity_keys={"customer_id": "int64"})
    for rid, customer, at in [("a", 1, 0), ("b", 1, 5), ("c", 2, 1), ("d", 3, 2), ("e", 3, 2),
                              ("f", 4, 3), ("g", 5, 4)]:
        writer.log(np.array([[at]]), np.array([0.9]), "1", now=T0 + at * HOUR,
                   request_id=rid, request={"x": at, "customer_id": customer})
    writer.close()
    return read_log(str(tmp_path))


# customer, label, hours after T0 when the outcome happened: shuffled, as labels arrive
LABELS = [(1, 1, 7.0), (2, 0, 0.5), (4, 1, 33.0), (1, 0, 6.0), (9, 1, 2.0), (3, 1, 3.0),
          (2, 1, 1.0), (1, 1, 4.0)]


def test_an_entity_join_gives_the_table_worked_out_by_hand(tmp_path):
    labels = pd.DataFrame(LABELS, columns=["customer_id", "outcome", "labelled_at"])
    labels["labelled_at"] = T0 + labels["labelled_at"] * HOUR  # unix seconds, as a source
    joined, counts = labelled_predictions(
        logged(tmp_path), labels.sample(frac=1, random_state=4), key="customer_id",
        label_column="outcome", timestamp="labelled_at", variants=True,
        within_seconds=int(24 * HOUR))
    # a: customer 1's label at 4h (its latest prediction then: a, at 0h)
    # b: labels at 6h (0) and 7h (1) both reach b (5h): the latest, 1, counts
    # c: customer 2's label at 1h, the instant of c; the one at 0.5h precedes every prediction
    # d, e: one customer at one instant, which of them the label is for is unknowable
    # f: its label came 30h later, past `within`; g: no label
    table = sorted(zip(joined[REQUEST_ID_COLUMN], joined[LABEL_COLUMN], strict=True))
    assert table == [("a", 1), ("b", 1), ("c", 1)]
    assert counts.as_dict() == {"predictions": 7, "labels": 8, "joined": 3, "unlabelled": 2,
                                "ambiguous": 2, "unmatched_labels": 4}
    # the same labels with times as timestamps (a warehouse column) join the same way
    stamped = labels.assign(labelled_at=pd.to_datetime(labels["labelled_at"], unit="s"))
    again, _ = labelled_predictions(logged(tmp_path / "again"), stamped, key="customer_id",
                                    label_column="outcome", timestamp="labelled_at",
                                    variants=True, within_seconds=int(24 * HOUR))
    assert sorted(zip(again[REQUEST_ID_COLUMN], again[LABEL_COLUMN], strict=True)) == table


def test_a_shorter_window_and_missing_columns(tmp_path):
    labels = pd.DataFrame(LABELS, columns=["customer_id", "outcome", "labelled_at"])
    labels["labelled_at"] = T0 + labels["labelled_at"] * HOUR
    log = logged(tmp_path)
    # within 1.5h: customer 1's 4h label no longer reaches a (0h), nor its 7h label b (5h);
    # b keeps the 6h label, 0
    joined, counts = labelled_predictions(log, labels, key="customer_id",
                                          label_column="outcome", timestamp="labelled_at",
                                          within_seconds=int(1.5 * HOUR))
    assert sorted(zip(joined[REQUEST_ID_COLUMN], joined[LABEL_COLUMN], strict=True)) == [
        ("b", 0), ("c", 1)]
    assert counts.unmatched_labels == 6
    with pytest.raises(JoinError, match="labels have no column `labelled_at`"):
        labelled_predictions(log, labels.drop(columns=["labelled_at"]), key="customer_id",
                             label_column="outcome", timestamp="labelled_at",
                             within_seconds=3600)
    with pytest.raises(JoinError, match="prediction log has no column `customer_id`"):
        labelled_predictions(log.drop(columns=["customer_id"]), labels, key="customer_id",
                             label_column="outcome", timestamp="labelled_at",
                             within_seconds=3600)
