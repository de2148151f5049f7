"""A search's trials as MLflow child runs of the training run: what each records, and the
best one, which the train step reads (so that it needs neither Optuna nor the trials' code).

A trial's run holds its hyperparameters as params, its validation metric per epoch, and
tags that let any later task rebuild the study: its number, its state (`complete`, `pruned`,
`failed`), the values as the sampler drew them (JSON) and the metric per epoch (JSON).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from mlc.compiler import ir

TAG_PARENT = "mlflow.parentRunId"  # MLflow's own: the UI nests the trials under the run
TAG_TRIAL = "mlc.search.trial"
TAG_STATE = "mlc.search.state"
TAG_DRAWN = "mlc.search.drawn"  # the sampler's values (choices JSON-encoded), for rebuilding
TAG_INTERMEDIATE = "mlc.search.intermediate"  # {"epoch": value}
TAG_VALUE = "mlc.search.value"
TAG_KATIB_TRIAL = "mlc.search.katib_trial"  # the Katib trial's name, under `platform.katib`
TAG_BEST_TRIAL = "mlc.search.best_trial"  # on the training run
TAG_BEST_VALUE = "mlc.search.best_value"
COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"


@dataclass(frozen=True)
class Trial:
    number: int
    state: str
    value: float | None
    drawn: dict[str, Any]  # as the sampler drew them
    intermediate: dict[int, float]
    run_id: str
    status: str  # the MLflow run's


def trials(client, experiment_id: str, parent: str) -> list[Trial]:
    """Every trial run of the parent run, by trial number (a retried trial may have two)."""
    out = []
    page = None
    while True:
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent}'",
            max_results=1000, page_token=page)
        for run in found:
            tags = run.data.tags
            if TAG_TRIAL not in tags:
                continue
            value = tags.get(TAG_VALUE)
            out.append(Trial(
                number=int(tags[TAG_TRIAL]), state=tags.get(TAG_STATE, FAILED),
                value=float(value) if value is not None else None,
                drawn=json.loads(tags.get(TAG_DRAWN, "{}")),
                intermediate={int(k): v for k, v in
                              json.loads(tags.get(TAG_INTERMEDIATE, "{}")).items()},
                run_id=run.info.run_id, status=run.info.status))
        page = found.token
        if not page:
            break
    return sorted(out, key=lambda t: (t.number, t.run_id))


def decode(search: ir.Search, drawn: dict[str, Any]) -> dict[str, Any]:
    """The trainer's hyperparameters from the sampler's values (choices are JSON text, since
    Optuna's choices must be scalars and `hiddenLayers` takes lists)."""
    kinds = {r.name: r.type for r in search.space}
    return {k: json.loads(v) if kinds.get(k) == "choice" else v
            for k, v in sorted(drawn.items())}


def best(search: ir.Search, found: list[Trial]) -> Trial | None:
    """The complete trial with the best value; the lower number wins a tie."""
    done = [t for t in found if t.state == COMPLETE and t.value is not None
            and math.isfinite(t.value)]
    if not done:
        return None
    sign = -1.0 if search.higher_is_better else 1.0
    return min(done, key=lambda t: (sign * t.value, t.number))
