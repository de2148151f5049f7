"""scikit-learn (`framework: sklearn`): the estimator `training.sklearn.estimator` names,
fitted on every training row (scikit-learn's estimators have no validation split of their
own here). Forests and histogram boosting take missing values as they are; the others get a
mean imputer in front, and the linear models a standard scaler too, in one Pipeline that
model.skops holds whole."""

from __future__ import annotations

from typing import Any

from mlc.runtime.step import StepFailed

from . import Fitted, Rows

LIBRARY = "scikit-learn"
# ml.yaml's setting (snake case, as the IR holds it) -> the estimator's parameter
PARAMETERS = {"n_estimators": "n_estimators", "max_depth": "max_depth",
              "min_samples_leaf": "min_samples_leaf", "learning_rate": "learning_rate",
              "max_iter": "max_iter", "c": "C", "alpha": "alpha"}


def version() -> str:
    import sklearn

    return sklearn.__version__


def estimator(name: str, task: str, hp: dict[str, Any], threads: int):
    from sklearn import ensemble, linear_model
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classify = task == "classification"
    kinds = {
        "random_forest": ensemble.RandomForestClassifier if classify
        else ensemble.RandomForestRegressor,
        "extra_trees": ensemble.ExtraTreesClassifier if classify
        else ensemble.ExtraTreesRegressor,
        "gradient_boosting": ensemble.GradientBoostingClassifier if classify
        else ensemble.GradientBoostingRegressor,
        "hist_gradient_boosting": ensemble.HistGradientBoostingClassifier if classify
        else ensemble.HistGradientBoostingRegressor,
        "logistic_regression": linear_model.LogisticRegression,
        "ridge": linear_model.Ridge,
    }
    cls = kinds[name]
    takes = cls().get_params()
    kwargs = {PARAMETERS[k]: v for k, v in hp.items() if k in PARAMETERS and v is not None}
    if "random_state" in takes:
        kwargs["random_state"] = int(hp["seed"])
    if "n_jobs" in takes:
        kwargs["n_jobs"] = threads
    if name in ("random_forest", "extra_trees", "hist_gradient_boosting"):
        return cls(**kwargs)
    impute = SimpleImputer(strategy="mean", keep_empty_features=True)
    if name == "gradient_boosting":
        return make_pipeline(impute, cls(**kwargs))
    return make_pipeline(impute, StandardScaler(), cls(**kwargs))


def fit(r: Rows, hp: dict[str, Any], threads: int) -> Fitted:
    import numpy as np

    if r.task == "ranking":  # the compiler refuses this (MLC335)
        raise StepFailed("scikit-learn has no ranking objective here: train a ranking model "
                         "with `framework: xgboost` or `framework: lightgbm`")

    x = np.concatenate([r.x_fit, r.x_val])
    y = np.concatenate([r.y_fit, r.y_val])
    model = estimator(str(hp["estimator"]), r.task, hp, threads)
    model.fit(x, y)
    return Fitted(native=model, rounds=0,
                  architecture={"estimator": str(hp["estimator"]),
                                "class": type(model[-1] if hasattr(model, "steps")
                                              else model).__name__})
