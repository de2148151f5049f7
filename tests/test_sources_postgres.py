"""Every step that reads data, reading PostgreSQL tables: a real server, a real Feast repo.

The test starts PostgreSQL (tests/servers.py), fills two tables, compiles a project whose
offline store and sources are Postgres, and runs what the pipeline steps run: data
validation, the training data join (Feast's postgres offline store, point in time), the
drift check's source window and the batch-scoring read, each against the server, with the
connection secret in the environment variable the generated pods get.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project

from . import servers

pd = pytest.importorskip("pandas", reason="the runtime tests need pandas (mlc[train])")
pytest.importorskip("feast", reason="the runtime tests need feast (mlc[train])")

pytestmark = pytest.mark.slow

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def _project(pg: servers.Postgres) -> dict:
    columns = [{"name": "user_id", "type": "int64"},
               {"name": "event_timestamp", "type": "unix_timestamp"}]
    return {
        "apiVersion": "mlc.dev/v1", "kind": "Project", "metadata": {"name": "shop"},
        "platform": {"imagePolicy": "tag", "featureStore": {
            "offlineStore": {"type": "postgres", "connectionSecret": "pg", "options": {
                "host": pg.host, "port": pg.port, "database": pg.database, "user": pg.user,
                "sslmode": "disable"}}}},
        "secrets": {"pg": {"kubernetes": {"name": "pg-offline", "key": "password"}}},
        "hardware": {"cpu": {"cpu": "500m", "memory": "1Gi"}},
        "sources": {
            "labels": {"type": "postgres", "table": "public.labels", "columns": [
                *columns, {"name": "label", "type": "int64", "allowed": [0, 1]}],
                "checks": {"minRows": 10}},
            "activity": {"type": "postgres",
                         "query": "SELECT user_id, event_timestamp, clicks FROM activity",
                         "columns": [*columns, {"name": "clicks", "type": "int64", "min": 0}]},
        },
        "entities": {"user": {"joinKey": "user_id"}},
        "features": {"activity_stats": {"entities": ["user"], "source": "activity",
                                        "ttl": "2d", "fields": [
                                            {"name": "clicks", "type": "int64"}]}},
        "models": {"churn": {"task": "classification",
                             "inputs": {"features": ["activity_stats"]},
                             "label": {"source": "labels", "column": "label"},
                             "training": {"hardware": "cpu"}}},
        "serving": {"churn-nightly": {"model": "churn", "mode": "batch", "hardware": "cpu",
                                      "batch": {"schedule": "0 2 * * *", "input": "labels",
                                                "output": "scores/churn.parquet"}}},
        "monitoring": {"drift": {"activity-drift": {
            "model": "churn", "reference": {"source": "activity", "window": "1d"},
            "current": {"source": "activity", "window": "1d"}}}},
    }


def _fill(pg: servers.Postgres) -> None:
    with pg.connect() as conn:
        conn.execute("CREATE TABLE labels (user_id bigint, event_timestamp timestamptz, "
                     "label bigint)")
        conn.execute("CREATE TABLE activity (user_id bigint, event_timestamp timestamptz, "
                     "clicks bigint)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO activity VALUES (%s, %s, %s)",
                            [(u, T0 + dt.timedelta(hours=h), u * 100 + h)
                             for u in range(1, 6) for h in range(0, 48, 6)])
            # labels a day in: user 5's label time has no activity row within the ttl before it
            cur.executemany("INSERT INTO labels VALUES (%s, %s, %s)",
                            [(u, T0 + dt.timedelta(hours=24 + k), (u + k) % 2)
                             for u in range(1, 6) for k in range(3)])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pg-sources")
    with servers.postgres() as pg:
        _fill(pg)
        root = tmp / "project"
        root.mkdir()
        (root / "ml.yaml").write_text(json.dumps(_project(pg)))
        [compiled] = compile_project(root, None, Diagnostics())
        repo = tmp / "feast"
        repo.mkdir()
        for name in ("feature_store.yaml", "features.py"):
            (repo / name).write_bytes(compiled.files[f"feast/{name}"])
        environ = {"MLC_FEAST_REPO": str(repo), "MLC_DATA_ROOT": str(root),
                   "MLC_OFFLINE_STORE_CONNECTION": pg.password}
        yield compiled.project, environ, tmp, pg


def _ctx(setup, pipeline: str, step: str, monkeypatch, run: str = "run"):
    from mlc.runtime.step import build_context

    project, environ, tmp, _ = setup
    for k, v in environ.items():
        monkeypatch.setenv(k, v)  # Feast expands the secret from the process environment
    return build_context(project, pipeline, step,
                         environ={**environ, "MLC_RUN_DIR": str(tmp / pipeline / run)})


def test_read_pushes_columns_and_window_into_the_query(setup, monkeypatch):
    from mlc.runtime import sources

    ctx = _ctx(setup, "train-churn", "validate-data", monkeypatch)
    table = sources.read(ctx, ctx.project.sources["activity"], ["user_id", "clicks"],
                         start=T0 + dt.timedelta(hours=6), end=T0 + dt.timedelta(hours=18))
    assert table.column_names == ["user_id", "clicks"]
    assert sorted(table.column("clicks").to_pylist()) == sorted(
        u * 100 + h for u in range(1, 6) for h in (6, 12))


def test_validation_checks_postgres_tables(setup, monkeypatch):
    from mlc.runtime.train import validation

    ctx = _ctx(setup, "train-churn", "validate-data", monkeypatch)
    problems, reports = validation.validate(ctx, ctx.model, now=T0 + dt.timedelta(days=2))
    assert problems == []
    assert [(r.source, r.rows, r.checked) for r in reports] == [
        ("labels", 15, True), ("activity", 40, True)]
    assert reports[0].location == "postgres: public.labels"


def test_validation_reports_bad_rows_in_postgres(setup, monkeypatch):
    from mlc.runtime.train import validation

    _, _, _, pg = setup
    with pg.connect() as conn:
        conn.execute("INSERT INTO activity VALUES (9, %s, -4)", (T0,))
    try:
        ctx = _ctx(setup, "train-churn", "validate-data", monkeypatch)
        problems, _ = validation.validate(ctx, ctx.model, now=T0 + dt.timedelta(days=2))
        assert [(p.source, p.column, p.check, p.rows) for p in problems] == [
            ("activity", "clicks", "min", 1)]
    finally:
        with pg.connect() as conn:
            conn.execute("DELETE FROM activity WHERE user_id = 9")


def test_training_data_joins_postgres_through_feast(setup, monkeypatch):
    from mlc.runtime.features import apply_repo
    from mlc.runtime.train import data

    ctx = _ctx(setup, "train-churn", "train", monkeypatch)
    apply_repo(ctx.feast_repo)
    dataset = data.build_dataset(ctx, ctx.model)
    frame = dataset.frame
    assert len(frame) == 15 and dataset.info["retrieval"] == "feast"
    # point in time: the newest activity row at or before the label time
    row = frame[(frame.user_id == 2) & (frame.event_timestamp == T0 + dt.timedelta(hours=25))]
    assert row["clicks"].tolist() == [2 * 100 + 24]


def test_drift_window_reads_postgres(setup, monkeypatch):
    from mlc.runtime.drift import step as drift

    ctx = _ctx(setup, "drift-activity-drift", "drift-check", monkeypatch)
    check = ctx.project.drift_checks["activity-drift"]
    start, end = T0 + dt.timedelta(hours=24), T0 + dt.timedelta(hours=48)
    frame = drift.source_window(ctx, check, "activity", start.timestamp(), end.timestamp())
    assert len(frame) == 20 and set(frame["clicks"] % 100) == {24, 30, 36, 42}


def test_rows_without_features_are_counted_and_fail_above_the_limit(setup, monkeypatch):
    from mlc.runtime.step import EXIT_BAD_DATA, StepFailed
    from mlc.runtime.train import data

    _, _, _, pg = setup
    with pg.connect() as conn:  # user 7 has no activity at all
        conn.execute("INSERT INTO labels VALUES (7, %s, 1)", (T0 + dt.timedelta(hours=30),))
    try:
        ctx = _ctx(setup, "train-churn", "train", monkeypatch, run="counted")
        dataset = data.build_dataset(ctx, ctx.model)
        info = dataset.info
        assert (info["label_rows"], info["dropped_rows"] + info["rows_without_features"]) == \
            (16, 1)
        assert info["dropped_share"] == round(1 / 16, 6)
        strict = ctx.model.model_copy(update={"training": ctx.model.training.model_copy(
            update={"max_dropped_rows": 0.05})})
        ctx = _ctx(setup, "train-churn", "train", monkeypatch, run="strict")
        with pytest.raises(StepFailed) as failed:
            data.build_dataset(ctx, strict)
        assert failed.value.exit_code == EXIT_BAD_DATA
        assert "above `training.maxDroppedRows` (0.05)" in failed.value.message
    finally:
        with pg.connect() as conn:
            conn.execute("DELETE FROM labels WHERE user_id = 7")
