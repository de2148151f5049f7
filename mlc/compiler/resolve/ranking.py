"""A ranking model (`task: ranking`): its queries, cutoffs and objective, and what a ranking
model cannot have.

The trainers learn from whole queries (the rows of one `group` value, with their sizes) and
the evaluation scores whole queries, so the group column must be one the training data
holds: an entity key of the model, or a column of the label source. The relevance label is
a grade (a whole number). Only the tree libraries have ranking objectives here; the torch
MLP and scikit-learn would train a regression on the grades, which is not what was asked.
"""

from __future__ import annotations

from ...schema.models import Model
from ...trainer_catalog import RANKING_OBJECTIVES, TRAINERS
from .. import ir
from .context import Context

RANKING_BLOCK = "MLC330"
RANKING_GROUP = "MLC334"
RANKING_TRAINER = "MLC335"
RANKING_OBJECTIVE = "MLC336"
RANKING_LABEL = "MLC337"
NOT_FOR_RANKING = "MLC338"
RANKING_CUTOFF_TWICE = "MLC339"

GRADE_TYPES = ("int32", "int64", "bool")


def rankers() -> list[str]:
    """The frameworks whose bundled trainer trains a ranking model."""
    return sorted(f for f, t in TRAINERS.items() if "ranking" in t.tasks)


def resolve_ranking(ctx: Context, m: Model, name: str, keys: list[str],
                    label_source: ir.Source | None) -> ir.Ranking | None:
    path = ("models", name)
    r = m.ranking
    if m.task != "ranking":
        if r is not None:
            ctx.error(RANKING_BLOCK, f"model `{name}` has a `ranking` block, but its task is "
                      f"{m.task}", (*path, "ranking"),
                      help="set `task: ranking`, or remove the `ranking` block")
        return None
    if r is None:
        ctx.error(RANKING_BLOCK, f"model `{name}` ranks (`task: ranking`) but does not say "
                  "which column names a row's query", (*path, "task"),
                  help="add `ranking: {group: <query id column>, k: [5, 10]}`")
        return None
    ok = True
    if m.training.custom is not None or m.framework not in rankers():
        ok = False
        where = (*path, "training", "custom") if m.training.custom is not None \
            else (*path, "framework" if "framework" in m.model_fields_set else "task")
        what = "a custom trainer" if m.training.custom is not None \
            else f"framework `{m.framework}`"
        ctx.error(RANKING_TRAINER, f"model `{name}` ranks, but {what} has no ranking "
                  "objective in mlc (it would fit a regression on the relevance grades)",
                  where, help="use `framework: " + "` or `framework: ".join(rankers())
                  + "` with its `training` block")
    objective = RANKING_OBJECTIVES[r.objective].get(m.framework)
    if ok and objective is None:
        ok = False
        offered = sorted(o for o, by in RANKING_OBJECTIVES.items() if m.framework in by)
        ctx.error(RANKING_OBJECTIVE, f"model `{name}`: {m.framework} has no `{r.objective}` "
                  "ranking objective", (*path, "ranking", "objective"),
                  help="use one of: " + ", ".join(f"`{o}`" for o in offered))
    columns = {c.name: c for c in label_source.columns} if label_source else {}
    if r.group == m.label.column:
        ok = False
        ctx.error(RANKING_GROUP, f"model `{name}`: the query column `{r.group}` is the "
                  "label", (*path, "ranking", "group"),
                  help="name the column whose value says which query a row belongs to")
    elif r.group not in keys and columns and r.group not in columns:
        ok = False
        ctx.error(RANKING_GROUP, f"model `{name}`: the query column `{r.group}` is neither an "
                  f"entity key of the model ({', '.join(keys) or 'none'}) nor a column of "
                  f"source `{m.label.source}`", (*path, "ranking", "group"),
                  help=f"name one of those, or add `{r.group}` to the columns of source "
                  f"`{m.label.source}`")
    label = columns.get(m.label.column)
    if label is not None and label.type not in GRADE_TYPES:
        ok = False
        ctx.error(RANKING_LABEL, f"model `{name}` ranks by relevance grades, but its label "
                  f"`{m.label.column}` is {label.type}", (*path, "label", "column"),
                  help="grade relevance as whole numbers (0 = irrelevant; int32 or int64)")
    seen: set[int] = set()
    for i, k in enumerate(r.k):
        if k in seen:
            ok = False
            ctx.error(RANKING_CUTOFF_TWICE, f"model `{name}`: cutoff {k} is listed twice",
                      (*path, "ranking", "k", i), help="list each cutoff once")
        seen.add(k)
    if not ok or objective is None:
        return None
    return ir.Ranking(group=r.group, k=sorted(seen), objective=objective)


def refuse(ctx: Context, model: ir.Model, what: str, path, help: str) -> bool:
    """Report `what` on a ranking model (MLC338); True when the model ranks."""
    if model.task != "ranking":
        return False
    ctx.error(NOT_FOR_RANKING, f"{what}, but model `{model.name}` ranks: its scores order "
              "the rows of a query and mean nothing one row at a time", path, help=help)
    return True
