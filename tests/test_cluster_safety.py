"""Settings that only work on one machine are refused outside development, and ml.yaml is
checked on its own as well as merged with each environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment

from . import argo_projects as ap
from .conftest import write_project

SAFE = {"platform": {"argocd": {"repoUrl": "https://git.acme.internal/ml/deploy.git"},
                     "featureStore": {"registry": "s3://acme-feast/registry.db",
                                      "onlineStore": {"type": "redis",
                                                      "connectionSecret": "redis"}},
                     "network": {"egress": [{"namespace": "redis", "ports": [6379]}]}},
        "secrets": {"redis": {"kubernetes": {"name": "feast-redis", "key": "url"}}},
        "sources": {"events": {"path": "s3://acme-data/events.parquet"}}}


def diagnose(tmp_path: Path, base: dict, overlays: dict[str, dict] | None = None,
             env: str = "default") -> dict[str, list[str]]:
    files = {"ml.yaml": json.dumps(base, indent=2)}
    for name, overlay in (overlays or {}).items():
        files[f"environments/{name}.yaml"] = json.dumps(overlay, indent=2)
    root = write_project(tmp_path, files)
    diags = Diagnostics()
    check_environment(root, env, diags)
    out: dict[str, list[str]] = {}
    for d in diags.items:
        where = f"{d.span.file}:{d.span.line}" if d.span else ""
        out.setdefault(d.code, []).append(f"{d.severity.value}: {d.dotted_path} ({where})")
    return out


def line_of(base: dict, needle: str) -> str:
    """`ml.yaml:<line>` of the first line of ml.yaml (as `diagnose` writes it) holding needle."""
    lines = json.dumps(base, indent=2).splitlines()
    return f"ml.yaml:{next(i for i, t in enumerate(lines, 1) if needle in t)}"


def test_a_lone_project_is_development_by_default(tmp_path):
    assert diagnose(tmp_path, ap.project()) == {}


def test_an_environment_file_makes_a_cluster_environment(tmp_path):
    found = diagnose(tmp_path, ap.project(), {"prod": {}}, env="prod")
    assert sorted(found) == ["MLC370", "MLC371", "MLC372", "MLC373"]
    where = line_of(ap.project(), '"path": "data/events.parquet"')
    assert found["MLC370"] == [f"error: sources.events.path ({where})"]
    assert all(v[0].startswith("error: platform.") for k, v in found.items() if k != "MLC370")


def test_development_true_allows_them(tmp_path):
    assert diagnose(tmp_path, ap.project(), {"dev": {"platform": {"development": True}}},
                    env="dev") == {}


def test_development_false_refuses_them_in_a_lone_project(tmp_path):
    found = diagnose(tmp_path, ap.project({"platform": {"development": False}}))
    assert sorted(found) == ["MLC370", "MLC371", "MLC372", "MLC373"]


def test_the_fixed_settings_pass(tmp_path):
    assert diagnose(tmp_path, ap.project(SAFE), {"prod": {}}, env="prod") == {}


@pytest.mark.parametrize("patch, code", [
    ({"sources": {"events": {"path": "data/events.parquet"}}}, "MLC370"),
    ({"platform": {"featureStore": {"registry": "registry.db"}}}, "MLC371"),
    ({"platform": {"featureStore": {"onlineStore": {"type": "sqlite"}}}}, "MLC372"),
    ({"platform": {"argocd": {"repoUrl": "https://git.example.com/ml.git"}}}, "MLC373"),
    ({"serving": {"churn-api": {"mode": "batch", "batch": {
        "schedule": "0 1 * * *", "input": "events", "output": "out/scores.parquet"}}}},
     "MLC370"),
])
def test_each_unsafe_setting_alone(tmp_path, patch, code):
    found = diagnose(tmp_path, ap.project(SAFE, patch), {"prod": {}}, env="prod")
    assert list(found) == [code], found


def test_a_sqlite_store_without_online_views_is_no_problem(tmp_path):
    offline = {"features": {"user_stats": {"online": False}},
               "platform": {"featureStore": {"onlineStore": {"type": "sqlite"}}}}
    assert diagnose(tmp_path, ap.project(SAFE, offline), {"prod": {}}, env="prod") == {}


# ---------------------------------------------------------------------------------------
# ml.yaml on its own


def test_a_bad_base_value_is_reported_where_every_environment_overrides_it(tmp_path):
    base = ap.project({"serving": {"churn-api": {"autoscaling": {"maxReplicas": -6}}}})
    fix = {"serving": {"churn-api": {"autoscaling": {"maxReplicas": 4}}}}
    for env in ("dev", "prod"):
        found = diagnose(tmp_path, base, {"dev": {"platform": {"development": True}, **fix},
                                          "prod": {"platform": {"development": True}, **fix}},
                         env=env)
        where = line_of(base, '"maxReplicas": -6')
        assert found == {"MLC111": ["error: serving.churn-api.autoscaling.maxReplicas "
                                    f"({where})"]}, env


def test_a_base_may_leave_required_keys_and_references_to_environments(tmp_path):
    base = ap.project({"platform": {"development": True}})
    del base["serving"]["churn-api"]["model"]  # every environment says which model
    base["serving"]["churn-api"]["hardware"] = "gpu"  # a profile that only overlays declare
    overlay = {"serving": {"churn-api": {"model": "churn"}},
               "hardware": {"gpu": {"cpu": "1", "memory": "1Gi"}}}
    assert diagnose(tmp_path, base, {"prod": overlay}, env="prod") == {}


def test_a_literal_secret_in_the_base_is_found_though_overridden(tmp_path):
    base = ap.project({"platform": {"development": True},
                       "serving": {"churn-api": {"env": {"API_TOKEN": "t0ps3cret"}}}})
    overlay = {"serving": {"churn-api": {"env": {"API_TOKEN": {"$patch": "delete"}}}}}
    found = diagnose(tmp_path, base, {"prod": overlay}, env="prod")
    assert list(found) == ["MLC110"], found
    assert found["MLC110"][0].endswith(f"({line_of(base, 't0ps3cret')})")
