"""LightGBM (`framework: lightgbm`): `lightgbm.train` on the fit rows with the validation
rows as its validation set, early-stopped there; model.txt holds the best iteration's trees
(LightGBM saves up to the best iteration), so any engine that loads it predicts what was
validated. Deterministic for a seed (`deterministic`, row-wise histograms)."""

from __future__ import annotations

from typing import Any

from . import Fitted, Rows, n_outputs

LIBRARY = "lightgbm"


def version() -> str:
    import lightgbm

    return lightgbm.__version__


def objective(r: Rows) -> tuple[dict[str, Any], str]:
    if r.task == "ranking":  # early stopping reads NDCG at the largest cutoff
        return {"objective": r.objective, "eval_at": [max(r.cutoffs)]}, "ndcg"
    if r.task == "regression":
        return {"objective": "regression"}, "l2"
    if n_outputs(r) == 2:
        return {"objective": "binary"}, "binary_logloss"
    return {"objective": "multiclass", "num_class": n_outputs(r)}, "multi_logloss"


def fit(r: Rows, hp: dict[str, Any], threads: int) -> Fitted:
    import lightgbm

    goal, metric = objective(r)
    subsample = float(hp["subsample"])
    params = {**goal, "metric": metric, "learning_rate": float(hp["learning_rate"]),
              "num_leaves": int(hp["num_leaves"]),
              "max_depth": int(hp["max_depth"]) if hp.get("max_depth") else -1,
              "bagging_fraction": subsample, "bagging_freq": 1 if subsample < 1 else 0,
              "feature_fraction": float(hp["colsample_bytree"]),
              "min_data_in_leaf": int(hp["min_child_samples"]),
              "lambda_l2": float(hp["reg_lambda"]), "lambda_l1": float(hp["reg_alpha"]),
              "seed": int(hp["seed"]), "num_threads": threads, "deterministic": True,
              "force_row_wise": True, "verbosity": -1}
    ranks = r.task == "ranking"  # the rows come sorted by query; `group` holds the sizes
    dfit = lightgbm.Dataset(r.x_fit, label=r.y_fit, feature_name=r.features,
                            free_raw_data=False, group=r.sizes("fit") if ranks else None)
    record: dict[str, dict[str, list[float]]] = {}
    callbacks = [lightgbm.record_evaluation(record)]
    valid = []
    if len(r.x_val):
        valid = [lightgbm.Dataset(r.x_val, label=r.y_val, reference=dfit,
                                  feature_name=r.features,
                                  group=r.sizes("val") if ranks else None)]
        if hp.get("early_stopping_rounds"):
            callbacks.append(lightgbm.early_stopping(int(hp["early_stopping_rounds"]),
                                                     verbose=False))
    booster = lightgbm.train(params, dfit, num_boost_round=int(hp["n_estimators"]),
                             valid_sets=valid, valid_names=["validation"] * len(valid),
                             callbacks=callbacks)
    rounds = booster.best_iteration or booster.current_iteration()
    key = f"ndcg@{max(r.cutoffs)}" if ranks else metric  # LightGBM's record names the cutoff
    losses = record.get("validation", {}).get(key, [])
    name = key.replace("@", "_at_")  # MLflow's metric names take no `@`
    history = [{"round": i + 1, f"val_loss_{name}": float(v)} for i, v in enumerate(losses)]
    return Fitted(native=booster, rounds=rounds, history=history,
                  architecture={"objective": params["objective"], "rounds": rounds})
