"""`allowPickle`: an endpoint that serves a model not in mlc's format says so in ml.yaml, and
the server it compiles to loads such a model (a real MLflow sklearn model) while one without
it refuses; training refuses to log one for an endpoint that would refuse it
(tests/test_runtime_train.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime.serve.loader import ModelLoadError, load_folder
from mlc.runtime.serve.settings import settings_for_endpoint

from .conftest import ROOT


def copy_example(folder) -> None:
    """The example's project files (not the checkout: its virtual environments are GBs)."""
    import shutil

    folder.mkdir(parents=True)
    shutil.copy(ROOT / "ml.yaml", folder / "ml.yaml")
    for name in ("environments", "data"):
        shutil.copytree(ROOT / name, folder / name,
                        ignore=shutil.ignore_patterns("*.db", "__pycache__"))


def _project(tmp_path, allow: bool | None):
    folder = tmp_path / "project"
    copy_example(folder)
    if allow is not None:
        text = (folder / "ml.yaml").read_text("utf-8")
        marker = "  fraud-api:\n    model: fraud-classifier\n"
        assert marker in text
        text = text.replace(marker, marker + f"    allowPickle: {str(allow).lower()}\n", 1)
        (folder / "ml.yaml").write_text(text, "utf-8")
    diags = Diagnostics()
    resolved = check_environment(folder, "dev", diags)
    assert resolved is not None, diags
    return resolved


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory):
    """A real MLflow sklearn model folder, as the registry would hand it to the server."""
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("sklearn") / "model"
    import pandas as pd

    x = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 3)), columns=["a", "b", "c"])
    model = LogisticRegression().fit(x, (x["a"] > 0).astype(int))
    mlflow.sklearn.save_model(model, str(folder), pyfunc_predict_fn="predict_proba",
                              input_example=x.head(3), skops_trusted_types=["numpy.dtype"])
    return folder


def test_allow_pickle_reaches_the_servers_settings_and_is_left_out_while_off(tmp_path):
    on = _project(tmp_path / "on", True)
    assert on.endpoints["fraud-api"].allow_pickle is True
    assert json.loads(on.model_dump_json())["endpoints"]["fraud-api"]["allow_pickle"] is True
    env = {"MLFLOW_TRACKING_URI": "sqlite:///unused.db"}
    assert settings_for_endpoint(on, "fraud-api", env).allow_pickle is True
    # off: not in project.json at all, so its arrival changed no compiled tree (goldens)
    off = _project(tmp_path / "off", None)
    assert "allow_pickle" not in json.loads(off.model_dump_json())["endpoints"]["fraud-api"]
    assert settings_for_endpoint(off, "fraud-api", env).allow_pickle is False


def test_the_server_loads_an_mlflow_model_only_where_the_endpoint_allows_it(
        sklearn_model, monkeypatch):
    monkeypatch.delenv("MLC_ALLOW_PICKLE", raising=False)
    common = {"name": "churn", "version": "3", "alias": None, "trained_at": None}
    with pytest.raises(ModelLoadError, match=r"allowPickle: true"):
        load_folder(sklearn_model, **common, allow_pickle=None)
    model = load_folder(sklearn_model, **common, allow_pickle=True)
    answer = np.asarray(model.predict(np.array([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])))
    assert answer.shape[0] == 2 and answer[0, -1] > 0.5 > answer[1, -1]


def test_allow_pickle_on_a_builtin_trained_model_is_a_located_warning(tmp_path):
    folder = tmp_path / "project"
    copy_example(folder)
    text = (folder / "ml.yaml").read_text("utf-8")
    marker = "  fraud-api:\n    model: fraud-classifier\n"
    (folder / "ml.yaml").write_text(text.replace(marker, marker + "    allowPickle: true\n", 1))
    diags = Diagnostics()
    assert check_environment(folder, "dev", diags) is not None
    found = [d for d in diags.items if d.code == "MLC327"]
    assert len(found) == 1 and found[0].path == ("serving", "fraud-api", "allowPickle")
