"""XGBoost (`framework: xgboost`): `xgboost.train` on the fit rows with the validation rows
as its evaluation set, early-stopped there; the model keeps the best round's trees only, so
model.json predicts what was validated (for mlc and for any engine that loads it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import Fitted, Rows, n_outputs

LIBRARY = "xgboost"


def version() -> str:
    import xgboost

    return xgboost.__version__


def objective(r: Rows) -> tuple[dict[str, Any], str]:
    """The objective's parameters and the evaluation metric that early stopping reads (a
    ranker's: NDCG at its largest cutoff)."""
    if r.task == "ranking":
        return {"objective": r.objective}, f"ndcg@{max(r.cutoffs)}"
    if r.task == "regression":
        return {"objective": "reg:squarederror"}, "rmse"
    if n_outputs(r) == 2:
        return {"objective": "binary:logistic"}, "logloss"
    return {"objective": "multi:softprob", "num_class": n_outputs(r)}, "mlogloss"


def fit(r: Rows, hp: dict[str, Any], threads: int) -> Fitted:
    import xgboost

    goal, metric = objective(r)
    params = {**goal, "eval_metric": metric, "tree_method": "hist",
              "max_depth": int(hp["max_depth"]), "eta": float(hp["learning_rate"]),
              "subsample": float(hp["subsample"]),
              "colsample_bytree": float(hp["colsample_bytree"]),
              "min_child_weight": float(hp["min_child_weight"]),
              "lambda": float(hp["reg_lambda"]), "alpha": float(hp["reg_alpha"]),
              "seed": int(hp["seed"]), "nthread": threads}
    # no feature names in the model: an engine that hands it a plain array (MLServer's xgboost
    # runtime does) would be refused; spec.json holds the names and their order
    # a ranker's rows come sorted by query; `qid` tells XGBoost where each query ends
    dfit = xgboost.DMatrix(r.x_fit, label=r.y_fit, missing=np.nan, nthread=threads,
                           qid=r.q_fit)
    evals = []
    if len(r.x_val):
        evals = [(xgboost.DMatrix(r.x_val, label=r.y_val, missing=np.nan, nthread=threads,
                                  qid=r.q_val), "validation")]
    stopping = hp.get("early_stopping_rounds") if evals else None
    record: dict[str, dict[str, list[float]]] = {}
    booster = xgboost.train(params, dfit, num_boost_round=int(hp["n_estimators"]),
                            evals=evals, early_stopping_rounds=stopping,
                            evals_result=record, verbose_eval=False)
    rounds = booster.num_boosted_rounds()
    if stopping is not None:
        rounds = booster.best_iteration + 1
        booster = booster[:rounds]  # the best round's trees, no later ones
    losses = record.get("validation", {}).get(metric, [])
    name = metric.replace("@", "_at_")  # MLflow's metric names take no `@`
    history = [{"round": i + 1, f"val_loss_{name}": float(v)} for i, v in enumerate(losses)]
    return Fitted(native=booster, rounds=rounds, history=history,
                  architecture={"objective": params["objective"], "rounds": rounds})
