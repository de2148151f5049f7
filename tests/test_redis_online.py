"""Redis as the online store, for real: materialise from the generated repo, look features up
from the serving runtime. The connection secret is given both as a URL (`redis://:pw@...`,
what Redis providers hand out) and in Feast's own `host:port,...` form.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project
from mlc.runtime.redis_connection import BadRedisConnection, feast_connection_string

from . import servers

pytestmark = pytest.mark.slow

NOW = dt.datetime(2024, 5, 2, tzinfo=dt.UTC)


def _project() -> dict:
    return {
        "apiVersion": "mlc.dev/v1", "kind": "Project", "metadata": {"name": "shop"},
        "platform": {"imagePolicy": "tag", "featureStore": {
            "onlineStore": {"type": "redis", "connectionSecret": "redis"}}},
        "secrets": {"redis": {"kubernetes": {"name": "redis", "key": "url"}}},
        "hardware": {"cpu": {"cpu": "500m", "memory": "1Gi"}},
        "sources": {"users": {"type": "file", "path": "data/users.parquet", "columns": [
            {"name": "user_id", "type": "int64"},
            {"name": "event_timestamp", "type": "unix_timestamp"},
            {"name": "clicks", "type": "int64"}, {"name": "label", "type": "int64"}]}},
        "entities": {"user": {"joinKey": "user_id"}},
        "features": {"user_stats": {"entities": ["user"], "source": "users", "online": True,
                                    "ttl": "30d", "fields": [
                                        {"name": "clicks", "type": "int64"}]}},
        "models": {"churn": {"task": "classification", "inputs": {"features": ["user_stats"]},
                             "label": {"source": "users", "column": "label"},
                             "training": {"hardware": "cpu"}}},
    }


@pytest.mark.parametrize("form", ["url", "feast"])
def test_materialise_to_redis_and_look_up_online(tmp_path, monkeypatch, form):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("redis", reason="Feast's redis extra is not installed")
    from mlc.runtime.features import apply_repo, materialize_repo
    from mlc.runtime.serve.features import OnlineFeatures

    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "ml.yaml").write_text(json.dumps(_project()))
    pd.DataFrame({"user_id": [1, 1, 2], "clicks": [3, 5, 7], "label": [0, 1, 0],
                  "event_timestamp": pd.to_datetime(["2024-05-01T00:00", "2024-05-01T12:00",
                                                     "2024-05-01T06:00"], utc=True)}
                 ).to_parquet(root / "data" / "users.parquet")
    [compiled] = compile_project(root, None, Diagnostics())
    repo = tmp_path / "feast"
    repo.mkdir()
    for name in ("feature_store.yaml", "features.py"):
        (repo / name).write_bytes(compiled.files[f"feast/{name}"])
    with servers.redis(tmp_path / "redis", password="p@ss word") as r:
        secret = (f"redis://:p%40ss%20word@{r.host}:{r.port}/0" if form == "url"
                  else f'{r.host}:{r.port},db=0,password="p@ss word"')
        monkeypatch.setenv("MLC_ONLINE_STORE_CONNECTION", secret)
        monkeypatch.setenv("MLC_DATA_ROOT", str(root))
        monkeypatch.setenv("MLC_MATERIALIZE_FROM", "all")
        apply_repo(repo)
        assert materialize_repo(repo, now=NOW) == ["user_stats"]
        online = OnlineFeatures(repo, "churn", ["user_id"], ["clicks"])
        values = online.lookup([{"user_id": 1}, {"user_id": 2}, {"user_id": 9}])
        assert values[:2, 0].tolist() == [5.0, 7.0]  # the newest row of each user
        assert pd.isna(values[2, 0])  # no row stored: missing, filled by the model


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://cache:6379/0", "cache:6379,db=0"),
    ("rediss://:pw@cache.example.com:6380/2", 'cache.example.com:6380,db=2,ssl=true,password="pw"'),
    ("redis://app:p%2Fw@cache", 'cache:6379,username="app",password="p/w"'),
    ("cache:6379,db=1", "cache:6379,db=1"),
])
def test_redis_urls_become_feast_connection_strings(url, expected):
    assert feast_connection_string(url) == expected


@pytest.mark.parametrize("url", ["redis://:a,b@cache:6379/0", "redis://cache:6379/zero",
                                 "redis://[::1]:6379/0", "redis:///0"])
def test_what_feast_cannot_read_is_refused(url):
    with pytest.raises(BadRedisConnection):
        feast_connection_string(url)

