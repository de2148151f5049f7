"""A model's hyperparameter search (`training.search`), checked against its trainer.

Every range must name a hyperparameter the builtin trainer takes, and every value a range
can produce must be one the trainer accepts (the same constraints as `training.builtin`),
so that no trial fails on a value ml.yaml allowed. The metric is one the trainer reports on
its validation rows: the evaluation's metrics (the list gates use), never the test rows,
which stay for the final gates.

With `platform.katib` the trials run as a Katib Experiment; what Katib cannot carry as
ml.yaml says (text of the trial it would rewrite) is refused here (MLC586).
"""

from __future__ import annotations

import math

from pydantic import ValidationError

from ...schema.models import BuiltinTrainer, Model, SearchRange
from .. import ir
from .context import Context
from .evaluation import known_metrics

SEARCH_NEEDS_BUILTIN = "MLC530"
UNKNOWN_HYPERPARAMETER = "MLC531"
BAD_RANGE = "MLC532"
UNKNOWN_SEARCH_METRIC = "MLC533"
SEARCH_DIRECTION_CONTRADICTS = "MLC534"
GRID_NEEDS_FINITE = "MLC535"
NO_VALIDATION_ROWS = "MLC536"
PARALLEL_TRIALS_ON_ONE_NODE_VOLUME = "MLC537"
KATIB_CANNOT = "MLC586"
SEARCH_NEEDS_TORCH = "MLC546"

DEFAULT_TRIALS = 20
MAX_GRID = 10_000
# `env` is the container's, not a hyperparameter
_NOT_SEARCHABLE = frozenset({"env"})


def searchable() -> dict[str, str]:
    """ml.yaml's name of each hyperparameter the builtin trainer takes -> the trainer's."""
    return {f.alias or name: name for name, f in sorted(BuiltinTrainer.model_fields.items())
            if name not in _NOT_SEARCHABLE}


def _refusal(alias: str, value) -> str | None:
    """Why `training.builtin` would refuse `value` for `alias`; None when it accepts it."""
    try:
        BuiltinTrainer.model_validate({alias: value}, strict=True)
    except ValidationError as exc:
        return exc.errors()[0]["msg"]
    return None


def _check_range(ctx: Context, alias: str, r: SearchRange, path) -> bool:
    def bad(message: str, where: str | None = None, help: str | None = None) -> bool:
        ctx.error(BAD_RANGE, f"search range of `{alias}`: {message}",
                  (*path, where) if where else path, help=help)
        return False

    numeric = r.type in ("uniform", "loguniform", "int")
    for key, value, allowed in (("low", r.low, numeric), ("high", r.high, numeric),
                                ("step", r.step, r.type == "int"),
                                ("values", r.values, r.type == "choice")):
        if value is not None and not allowed:
            return bad(f"`{key}` does not apply to type `{r.type}`", key,
                       help=f"remove `{key}`")
    if r.type == "choice":
        if not r.values:
            return bad("a `choice` needs a non-empty list of `values`", "values",
                       help="list the values to try, e.g. `values: [32, 64]`")
        for value in r.values:
            if (why := _refusal(alias, value)) is not None:
                return bad(f"value {value!r} is not one `{alias}` takes: {why}", "values",
                           help=f"keep only values that `training.builtin.{alias}` accepts")
        return True
    if r.low is None or r.high is None:
        return bad(f"type `{r.type}` needs `low` and `high`",
                   help="set both bounds, e.g. `{type: uniform, low: 0.0, high: 0.5}`")
    if not r.low < r.high:
        return bad(f"`low` ({r.low}) must be below `high` ({r.high})", "low",
                   help="swap or widen the bounds")
    if r.type == "loguniform" and r.low <= 0:
        return bad(f"a loguniform range needs `low` above 0, got {r.low}", "low",
                   help="use a positive bound, e.g. `low: 1e-5`")
    if r.type == "int":
        if not (float(r.low).is_integer() and float(r.high).is_integer()):
            return bad("an `int` range needs whole-number bounds", "low",
                       help="use whole numbers, or type `uniform`")
        probe = [int(r.low), int(r.high)]
    else:
        # every float hyperparameter takes 0.5; the whole-number ones refuse it
        if _refusal(alias, 0.5) is not None and _refusal(alias, 1) is None:
            return bad(f"`{alias}` takes whole numbers, not a `{r.type}` range", "type",
                       help="use `type: int`")
        probe = [r.low, r.high]
    for key, value in zip(("low", "high"), probe, strict=True):
        if (why := _refusal(alias, value)) is not None:
            return bad(f"`{key}` {value!r} is not a value `{alias}` takes: {why}", key,
                       help=f"keep the range within what `training.builtin.{alias}` accepts")
    return True


def resolve_search(ctx: Context, m: Model, name: str,
                   custom: list[ir.CustomMetric]) -> ir.Search | None:
    s = m.training.search
    if s is None:
        return None
    path = ("models", name, "training", "search")
    ok = True
    if m.training.custom is not None or m.training.nodes > 1:
        what = "a custom trainer" if m.training.custom is not None else "distributed training"
        ctx.error(SEARCH_NEEDS_BUILTIN, f"model `{name}` searches hyperparameters, which mlc "
                  f"does for the builtin trainer on one node, not for {what}", path,
                  help="remove `search`, or train with `builtin` and `nodes: 1`")
        return None
    if m.framework != "torch":
        ctx.error(SEARCH_NEEDS_TORCH, f"model `{name}` searches hyperparameters, which mlc "
                  f"does for the torch trainer only, not for the bundled {m.framework} "
                  "trainer", path, help=f"remove `search` and set the values in "
                  f"`training.{m.framework}`, or train with `framework: torch`")
        return None
    names = searchable()
    ranges: list[ir.SearchRange] = []
    for alias in sorted(s.space):
        r = s.space[alias]
        where = (*path, "space", alias)
        if alias not in names:
            ctx.error(UNKNOWN_HYPERPARAMETER, f"the builtin trainer has no hyperparameter "
                      f"`{alias}` to search (known: {', '.join(names)})", where,
                      help="search one of the known hyperparameters")
            ok = False
            continue
        if not _check_range(ctx, alias, r, where):
            ok = False
            continue
        low, high = r.low, r.high
        if r.type == "int":
            low, high = int(low), int(high)
        ranges.append(ir.SearchRange(name=names[alias], type=r.type, low=low, high=high,
                                     step=(r.step or 1) if r.type == "int" else None,
                                     values=list(r.values) if r.values is not None else None))
    known = known_metrics(m, custom)
    direction = known.get(s.metric)
    if s.metric not in known:
        ctx.error(UNKNOWN_SEARCH_METRIC, f"the search of model `{name}` judges trials by "
                  f"`{s.metric}`, which the trainer never reports (known: "
                  f"{', '.join(known)})", (*path, "metric"),
                  help="use one of the known metrics, computed on the validation rows")
        ok = False
    elif s.direction is not None and (s.direction == "maximize") != direction:
        word = "higher" if direction else "lower"
        ctx.error(SEARCH_DIRECTION_CONTRADICTS, f"`direction: {s.direction}` contradicts "
                  f"metric `{s.metric}`, for which {word} is better", (*path, "direction"),
                  help="remove `direction`: the metric's own is used")
        ok = False
    builtin = m.training.builtin or BuiltinTrainer.model_validate({}, strict=True)
    split = s.space.get("validationSplit")
    if builtin.validation_split == 0 and split is None or split is not None and (
            (split.values is not None and 0 in split.values) or split.low == 0):
        ctx.error(NO_VALIDATION_ROWS, f"the search of model `{name}` judges trials on the "
                  "validation rows, but `validationSplit` may be 0", path,
                  help="set `training.builtin.validationSplit` above 0 (e.g. 0.2)")
        ok = False
    trials = s.trials or DEFAULT_TRIALS
    if s.method == "grid":
        continuous = [a for a in sorted(s.space) if s.space[a].type in ("uniform", "loguniform")]
        size = math.prod(_size(r) for r in ranges) if not continuous else 0
        if continuous:
            ctx.error(GRID_NEEDS_FINITE, "a grid search tries every combination, but "
                      f"{', '.join(f'`{c}`' for c in continuous)} has a continuous range",
                      (*path, "method"), help="use `int` or `choice` ranges, or `method: tpe`")
            ok = False
        elif size > MAX_GRID or (s.trials is not None and s.trials > size):
            ctx.error(GRID_NEEDS_FINITE, f"the grid has {size} combinations"
                      + (f", fewer than `trials: {s.trials}`" if size <= MAX_GRID else
                         f", more than {MAX_GRID}"), (*path, "trials"),
                      help="leave `trials` out (every combination), or narrow the grid")
            ok = False
        else:
            trials = s.trials or size
    if s.parallelism > 1 and trials > 1 \
            and ctx.project.platform.run_volume.access_mode != "ReadWriteMany":
        # a warning, as for distributed training (MLC321): NFS-like storage shares a
        # ReadWriteOnce volume across nodes; block storage leaves other nodes' trials pending
        ctx.warning(PARALLEL_TRIALS_ON_ONE_NODE_VOLUME, f"model `{name}` runs "
                    f"{min(s.parallelism, trials)} trials at once, but the run volume they "
                    "all read is ReadWriteOnce: on block storage trials scheduled on other "
                    "nodes wait to mount it", (*path, "parallelism"),
                    help="set `platform: {runVolume: {accessMode: ReadWriteMany}}` (with a "
                    "storage class that supports it), or `parallelism: 1`")
    engine = "katib" if ctx.project.platform.katib is not None else "argo"
    if engine == "katib" and not _katib_can(ctx, m, path):
        ok = False
    if not ok:
        return None
    katib = ctx.project.platform.katib
    return ir.Search(method=s.method, engine=engine,
                     katib_namespace=katib.namespace if katib is not None else None,
                     space=ranges, trials=trials,
                     parallelism=min(s.parallelism, trials), metric=s.metric,
                     higher_is_better=bool(direction), pruning=s.pruning, seed=s.seed)


# Katib writes a trial's values into its trial template's text and replaces every
# `${trialParameters.<name>}` there: no other text of the trial may hold the placeholder.
KATIB_PLACEHOLDER = "${trialParameters."


def _katib_can(ctx: Context, m: Model, path) -> bool:
    """What Katib cannot run as ml.yaml says (MLC586): the trial's own text that Katib would
    rewrite (its env, the tracking server's address)."""
    ok = True
    builtin = m.training.builtin
    texts = [(("models", path[1], "training", "builtin", "env", key), f"env `{key}`", value)
             for key, value in sorted((builtin.env if builtin is not None else {}).items())]
    texts.append((("platform", "mlflow", "trackingUri"), "the MLflow tracking URI",
                  ctx.project.platform.mlflow.tracking_uri))
    for where, what, value in texts:
        if isinstance(value, str) and KATIB_PLACEHOLDER in value:
            ok = False
            ctx.error(KATIB_CANNOT, f"{what} holds `${{trialParameters.`, which Katib replaces "
                      f"in the trial's template, so the trial of model `{path[1]}` would not "
                      "see it as written", where,
                      help="write the value without `${trialParameters.`, or run the search "
                      "as Argo tasks (leave out `platform.katib`)")
    return ok


def _size(r: ir.SearchRange) -> int:
    if r.type == "int":
        return len(range(int(r.low), int(r.high) + 1, r.step or 1))
    return len(r.values or [])
