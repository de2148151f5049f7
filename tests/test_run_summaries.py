"""The step summaries `mlc run` shows: written by the steps' own helper, read and phrased by
the runner (the full run in test_mlc_run.py shows them on the bundled example)."""

from __future__ import annotations

from types import SimpleNamespace

from mlc.local import summaries
from mlc.runtime import step_summary
from mlc.runtime.drift.stats import ColumnDrift


def _ctx(tmp_path, step):
    return SimpleNamespace(run_dir=tmp_path, step=SimpleNamespace(name=step))


def test_gates_rows_and_versions_read_back_as_written(tmp_path):
    step_summary.write(_ctx(tmp_path, "evaluate"), [
        step_summary.gate({"metric": "roc_auc", "value": 0.91234, "min": 0.8, "max": None,
                           "passed": True}),
        step_summary.gate({"metric": "recall", "value": 0.41, "min": 0.5, "max": None,
                           "passed": False}, "country = 'DE'"),
        step_summary.gate({"metric": "log_loss", "value": float("nan"), "min": None,
                           "max": 0.5, "passed": False}),
        {"kind": "comparison", "metric": "roc_auc", "candidate": 0.91, "champion": 0.93,
         "max_regression": 0.01, "passed": False},
    ])
    assert summaries.lines(summaries.read(tmp_path, "evaluate")) == [
        "gate roc_auc 0.9123 (must be >= 0.8): pass",
        "gate slice country = 'DE': recall 0.41 (must be >= 0.5): FAIL",
        "gate log_loss missing (must be <= 0.5): FAIL",
        "vs champion: roc_auc 0.91 against 0.93, may regress by 0.01: FAIL",
    ]
    facts = [{"kind": "rows", "source": "events", "read": 100, "used": 80, "failing": 3,
              "problems": ["amount: 3 rows above max 10"]},
             {"kind": "rows", "source": "users", "read": 7, "used": 7, "failing": 0,
              "problems": []},
             {"kind": "dataset", "label_rows": 80, "dropped": 2, "without_features": 1,
              "train_rows": 62, "test_rows": 15, "max_dropped_share": 0.05},
             {"kind": "dataset", "label_rows": 7, "dropped": 0, "without_features": 0,
              "train_rows": 6, "test_rows": 1, "max_dropped_share": None},
             {"kind": "registered", "model": "churn", "version": 4, "alias": "challenger"},
             {"kind": "promoted", "model": "churn", "version": 4, "alias": "champion",
              "promoted": False, "holder": 2}]
    assert summaries.lines(facts) == [
        "source events: 100 rows read, 20 outside the training window dropped, 1 check "
        "failed (3 rows)",
        "  amount: 3 rows above max 10",
        "source users: 7 rows read, all checks pass",
        "training set: 80 labelled rows, 2 dropped by the feature join, 1 without features "
        "(at most 5% may be); 62 to train on, 15 to test",
        "training set: 7 labelled rows; 6 to train on, 1 to test",
        "registered churn version 4 as @challenger",
        "@champion stays on version 2 (version 4 not promoted)",
    ]


def test_drift_lists_the_features_furthest_past_their_threshold_first(tmp_path):
    columns = [ColumnDrift("amount", "numerical", "ks", 0.001, 0.05, True, 10, 10),
               ColumnDrift("country", "categorical", "psi", 0.9, 0.1, True, 10, 10),
               ColumnDrift("age", "numerical", "ks", 0.04, 0.05, True, 10, 10),
               ColumnDrift("tenure", "numerical", "ks", 0.6, 0.05, False, 10, 10)]

    def past(c):  # as the drift step measures it: p-values below, distances above
        return c.score / c.threshold if c.method == "psi" else c.threshold / c.score

    step_summary.write(_ctx(tmp_path, "drift-check"), [step_summary.drift(
        "inputs", columns, 3, 0.75, 0.5, past, "/r/report.html")])
    assert summaries.lines(summaries.read(tmp_path, "drift-check")) == [
        "3 of 4 features drifted (share 0.75, threshold 0.50)",
        "  amount: ks 0.001 (threshold 0.05)",
        "  country: psi 0.9 (threshold 0.1)",
        "  age: ks 0.04 (threshold 0.05)",
        "report: /r/report.html",
    ]


def test_a_missing_or_foreign_summary_shows_nothing(tmp_path):
    assert summaries.read(tmp_path, "train") == []
    path = summaries.summary_file(tmp_path, "train")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert summaries.read(tmp_path, "train") == []
    path.write_text('{"facts": [{"kind": "gate"}, {"kind": "later"}, 3]}')
    assert summaries.lines(summaries.read(tmp_path, "train")) == []
