"""The generated repository in real Feast: apply, materialize, read back what was written.

Each test compiles a project, writes small Parquet data under a temporary MLC_DATA_ROOT, and
runs a fresh Python process that drives Feast's own CLI (`feast apply`, `feast materialize`
or `materialize-incremental`, exactly what the pipeline steps run) and then reads features
through the FeatureStore API. A fresh process per repository, because Feast imports the
repository as a module named after its file, and a second repository in the same process
would get the first one's module back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment

from .conftest import ROOT
from .test_feast import ALL_HOSTILE, _files, _ok, _project

pd = pytest.importorskip("pandas", reason="the real Feast tests need pandas (mlc[train])")
pytest.importorskip("feast", reason="the real Feast tests need feast (mlc[train])")

pytestmark = pytest.mark.slow

DRIVER = r"""
import json, sys
import pandas as pd
from feast import FeatureStore
from feast.cli.cli import cli

spec = json.loads(sys.argv[1])
for args in spec["cli"]:
    cli.main(["--chdir", spec["repo"], *args], standalone_mode=False)
store = FeatureStore(repo_path=spec["repo"])
service = store.get_feature_service(spec["service"])
entity_df = pd.DataFrame(spec["entity_rows"])
entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
history = store.get_historical_features(entity_df=entity_df, features=service).to_df()
history["event_timestamp"] = history["event_timestamp"].map(lambda t: t.isoformat())
views = {v.name: v for v in store.list_feature_views()}
out = {
    "historical": json.loads(history.to_json(orient="records")),
    "online": store.get_online_features(features=service,
                                        entity_rows=spec["online_rows"]).to_dict(),
    "views": {name: {"description": v.description, "owner": v.owner, "tags": v.tags,
                     "fields": {f.name: [f.description, f.tags] for f in v.schema},
                     "online": v.online, "ttl": v.ttl.total_seconds()}
              for name, v in views.items()},
    "entities": {e.name: [e.description, e.tags] for e in store.list_entities()},
    "services": {s.name: [s.description, s.tags] for s in store.list_feature_services()},
    "on_demand": sorted(v.name for v in store.list_on_demand_feature_views()),
}
print("RESULT " + json.dumps(out, default=str))
"""


def _at(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _run_feast(files: dict[str, bytes], data_root: Path, spec: dict, tmp_path: Path) -> dict:
    repo = tmp_path / "repo"
    repo.mkdir()
    for path, content in files.items():
        if path in ("feast/feature_store.yaml", "feast/features.py"):
            (repo / Path(path).name).write_bytes(content)
    before = sorted(p.name for p in repo.iterdir())
    env = {**os.environ, "MLC_DATA_ROOT": str(data_root), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-c", DRIVER, json.dumps({**spec, "repo": str(repo)})],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # Feast keeps its state under the data root: a read-only mount of the repository works
    assert sorted(p.name for p in repo.iterdir()) == before
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def _by_key(rows: list[dict], *keys: str) -> dict[tuple, dict]:
    return {tuple(row[k] for k in keys): row for row in rows}


def test_generated_repository_round_trip(tmp_path):
    """Two entities, two views (one with derived features), a service: the values read back,
    offline at points in time and online after materialization, are the values written."""
    data = _project()
    item_stats = data["features"]["item_stats"]
    item_stats["online"] = True
    user_stats = data["features"]["user_stats"]
    user_stats.update(description=ALL_HOSTILE, owner=ALL_HOSTILE,
                      tags={"team": ALL_HOSTILE, ALL_HOSTILE: "x"})
    user_stats["fields"][0]["description"] = ALL_HOSTILE
    data["entities"]["user"]["description"] = ALL_HOSTILE
    data["featureServices"]["ranker_inputs"].update(description=ALL_HOSTILE,
                                                   tags={"t": ALL_HOSTILE})
    data["sources"]["item_daily"]["path"] = "data/item_daily.parquet"
    files = _files(_ok(tmp_path, data))

    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    pd.DataFrame({"user_id": [1, 1, 2], "event_timestamp": [_at(1), _at(3), _at(2)],
                  "clicks": [10, 30, 20], "spend": [1.5, 3.5, 2.5]}
                 ).to_parquet(root / "data" / "user_daily.parquet")
    pd.DataFrame({"item_id": ["a", "b"], "event_timestamp": [_at(1), _at(1)],
                  "price": [10.0, 30.0], "views": [4, 9]}
                 ).to_parquet(root / "data" / "item_daily.parquet")

    rows = [
        (1, "a", _at(2)),      # user 1's Jan 1 row: the Jan 3 row is in the future
        (1, "b", _at(4)),      # user 1's Jan 3 row
        (2, "a", _at(2, 12)),  # user 2's only row
        (3, "b", _at(2)),      # no such user: null user features, item features still there
        (1, "a", datetime(2023, 12, 31, 23, tzinfo=UTC)),  # before any data
        (2, "a", _at(9)),      # user 2's row is older than the view's TTL (3 days)
    ]
    spec = {
        "cli": [["apply"], ["materialize", "2023-12-01T00:00:00", "2024-01-05T00:00:00"]],
        "service": "ranker_inputs",
        "entity_rows": [{"user_id": u, "item_id": i, "event_timestamp": _iso(t)}
                        for u, i, t in rows],
        "online_rows": [{"user_id": 1, "item_id": "a"}, {"user_id": 9, "item_id": "z"}],
    }
    out = _run_feast(files, root, spec, tmp_path)

    history = _by_key(out["historical"], "user_id", "item_id", "event_timestamp")
    expected = {
        (1, "a", _at(2)): dict(clicks=10, spend=1.5, price=10.0, views=4, price_per_view=2.0,
                               double_ppv=4.0, views_plus=5),
        (1, "b", _at(4)): dict(clicks=30, spend=3.5, price=30.0, views=9, price_per_view=3.0,
                               double_ppv=6.0, views_plus=10),
        (2, "a", _at(2, 12)): dict(clicks=20, spend=2.5, price=10.0, views=4,
                                   price_per_view=2.0, double_ppv=4.0, views_plus=5),
        (3, "b", _at(2)): dict(clicks=None, spend=None, price=30.0, views=9,
                               price_per_view=3.0, double_ppv=6.0, views_plus=10),
    }
    for (user, item, moment), values in expected.items():
        row = history[(user, item, _iso(moment))]
        assert {k: row[k] for k in values} == values, (user, item, moment)
    # Rows with no user value in the TTL window must not see one from outside it. (Feast's
    # file offline store drops such rows rather than returning nulls; either is correct.)
    for user, item, moment in rows[4:]:
        row = history.get((user, item, _iso(moment)))
        assert row is None or (row["clicks"] is None and row["spend"] is None), row

    online = out["online"]
    assert online["clicks"] == [30, None] and online["spend"] == [3.5, None]
    assert online["price"] == [10.0, None] and online["views"] == [4, None]
    assert online["price_per_view"] == [2.0, None] and online["double_ppv"] == [4.0, None]
    assert online["views_plus"] == [5, None]

    # The registry holds every hostile string exactly as ml.yaml wrote it.
    view = out["views"]["user_stats"]
    assert view["description"] == ALL_HOSTILE and view["owner"] == ALL_HOSTILE
    assert view["tags"] == {"team": ALL_HOSTILE, ALL_HOSTILE: "x"}
    assert view["fields"]["clicks"][0] == ALL_HOSTILE
    assert view["ttl"] == 3 * 86400 and view["online"] is True
    assert out["entities"]["user"][0] == ALL_HOSTILE
    assert out["services"]["ranker_inputs"] == [ALL_HOSTILE, {"t": ALL_HOSTILE}]
    assert out["on_demand"] == ["item_stats_derived"]


def test_bundled_example_dev_environment(tmp_path):
    """The example's dev repository, with the command the materialization steps run.

    `materialize-incremental` starts a view's first run at now minus its TTL, so the data
    here is recent rather than fixed in the past."""
    diags = Diagnostics()
    project = check_environment(ROOT, "dev", diags)
    assert project is not None, [d.message for d in diags.errors]
    files = _files(project)

    now = datetime.now(UTC).replace(microsecond=0)
    older, newer = now - timedelta(hours=30), now - timedelta(hours=6)
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    pd.DataFrame({"customer_id": [1, 1, 2], "event_timestamp": [older, newer, older],
                  "txn_count_7d": [3, 5, 4], "amount_avg_7d": [10.0, 12.0, 20.0],
                  "account_age_days": [100, 101, 200]}
                 ).to_parquet(root / "data" / "customer_daily.parquet")
    pd.DataFrame({"merchant_id": [7, 8], "event_timestamp": [older, older],
                  "chargeback_rate_30d": [0.1, 0.3], "txn_count_30d": [9, 14]}
                 ).to_parquet(root / "data" / "merchant_daily.parquet")
    spec = {
        "cli": [["apply"], ["materialize-incremental", now.strftime("%Y-%m-%dT%H:%M:%S")]],
        "service": "fraud_inputs",
        "entity_rows": [{"customer_id": 1, "merchant_id": 8,
                         "event_timestamp": _iso(now - timedelta(hours=20))}],
        "online_rows": [{"customer_id": 1, "merchant_id": 7},
                        {"customer_id": 2, "merchant_id": 8}],
    }
    out = _run_feast(files, root, spec, tmp_path)

    (row,) = out["historical"]  # between the two customer rows: the older one
    assert {k: row[k] for k in ("txn_count_7d", "amount_avg_7d", "account_age_days",
                                "chargeback_rate_30d", "txn_count_30d", "merchant_risk")} == {
        "txn_count_7d": 3, "amount_avg_7d": 10.0, "account_age_days": 100,
        "chargeback_rate_30d": 0.3, "txn_count_30d": 14, "merchant_risk": pytest.approx(2.0)}
    online = out["online"]
    assert online["txn_count_7d"] == [5, 4] and online["amount_avg_7d"] == [12.0, 20.0]
    assert online["account_age_days"] == [101, 200]
    assert online["chargeback_rate_30d"] == [0.1, 0.3] and online["txn_count_30d"] == [9, 14]
    # chargeback_rate_30d * 100 / (txn_count_30d + 1), computed at request time
    assert online["merchant_risk"] == [pytest.approx(1.0), pytest.approx(2.0)]
    assert out["views"]["customer_stats"]["tags"] == {"domain": "customer"}
    assert out["views"]["customer_stats"]["owner"] == "risk-ml@example.com"
    assert (root / "data" / "registry.db").is_file()
    assert (root / "data" / "online_store.db").is_file()
