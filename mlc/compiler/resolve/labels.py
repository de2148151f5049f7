"""How logged predictions join their labels: the checks shared by the A/B verdict and the
model-quality monitor, which both read the prediction log through one join
(mlc/runtime/verdict/join.py).

`key` joins a label to its request exactly (`request_id`, or an input the log holds);
`entity` joins it as of the label's time to the latest prediction for the entity, at most
`within` earlier. Everything a join could get wrong without running is refused here: a key
the log does not hold, an entity the endpoint's requests do not carry, a column the labels
source does not declare, an as-of join without the labels' time.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...schema.labels import LabelsJoin
from ...schema.types import duration_seconds
from .. import ir
from ..diagnostics import did_you_mean
from .context import Context

JOIN_COLUMN = "MLC362"  # a key the log lacks, or a column the labels source lacks
JOIN_ENTITY = "MLC382"  # an entity the endpoint's model is not keyed by
JOIN_TIME = "MLC383"  # an as-of join on labels without a declared time column
JOIN_SETTINGS = "MLC384"  # `key` with `entity`, or `within` without it
REQUEST_ID = "request_id"  # prediction_log.REQUEST_ID_COLUMN (the compiler never imports it)
DEFAULT_WITHIN = "1d"


@dataclass(frozen=True)
class Join:
    key: str  # the log's column: request_id, an input, or the entity's join key
    label_column: str
    within_seconds: int | None  # as of the label's time; None: exactly on `key`
    label_time_column: str | None


def resolve_join(ctx: Context, who: str, j: LabelsJoin, model: ir.Model,
                 sources: dict[str, ir.Source], path: tuple) -> Join | None:
    """`who` opens each message ("endpoint `e`: the verdict"); None after an error."""
    key, within = _key(ctx, who, j, model, path)
    if key is None:
        return None
    ok = True
    logged = sorted({REQUEST_ID, *(f.field for f in model.features)})
    if j.entity is None and j.key not in logged:
        ok = False
        ctx.error(JOIN_COLUMN, f"{who} joins on `{j.key}`, which the prediction log does not "
                  "hold", (*path, "key"),
                  help=did_you_mean(j.key, logged) or "use `request_id` or one of the "
                  f"model's inputs: {', '.join(logged)}")
    label_column = j.label_column or model.label_column
    source = sources.get(j.labels)
    declared = {c.name for c in source.columns} if source else set()
    if j.entity and source and declared and source.timestamp_field not in declared:
        ok = False
        ctx.error(JOIN_TIME, f"{who} joins labels to predictions as of the label's time, but "
                  f"source `{j.labels}` declares no column `{source.timestamp_field}` (its "
                  "`timestampField`)", (*path, "labels"),
                  help=f"declare `{source.timestamp_field}` in `sources.{j.labels}.columns`, "
                  "or set the source's `timestampField` to the column with the label's time")
    for field, column in (("entity" if j.entity else "key", key),
                          ("label_column", label_column)):
        if declared and column not in declared and (field != "key" or j.key in logged):
            ok = False
            # point at the setting, or at `labels` when the column is the default
            where = ({"label_column": "labelColumn"}.get(field, field)
                     if field in j.model_fields_set else "labels")
            ctx.error(JOIN_COLUMN, f"{who} reads column `{column}` of source `{j.labels}`, "
                      "which declares no such column", (*path, where),
                      help=did_you_mean(column, declared) or f"declare `{column}` in "
                      f"`sources.{j.labels}.columns`")
    if not ok or source is None:
        return None
    return Join(key=key, label_column=label_column, within_seconds=within,
                label_time_column=source.timestamp_field if j.entity else None)


def _key(ctx: Context, who: str, j: LabelsJoin, model: ir.Model, path: tuple
         ) -> tuple[str | None, int | None]:
    """The log's join column and the as-of window (None: an exact join); no column when the
    join settings are wrong (reported)."""
    if j.entity is None:
        if j.within is not None:
            ctx.error(JOIN_SETTINGS, f"{who} joins on `key`, and `within` bounds only an "
                      "as-of join on an entity", (*path, "within"),
                      help="add `entity: <name>` (labels keyed by an entity and a time), or "
                      "remove `within`")
            return None, None
        return j.key, None
    if "key" in j.model_fields_set:
        ctx.error(JOIN_SETTINGS, f"{who} sets both `key` and `entity`", (*path, "entity"),
                  help="keep `key` for labels keyed by the request (or an input), `entity` "
                  "for labels keyed by an entity and a time")
        return None, None
    entities = ctx.project.entities
    served = sorted(n for n, x in entities.items() if x.join_key in model.entity_keys)
    entity = entities.get(j.entity)
    if entity is None or j.entity not in served:
        what = "is no entity" if entity is None else \
            f"is not an entity of model `{model.name}`'s features"
        ctx.error(JOIN_ENTITY, f"{who} joins on entity `{j.entity}`, which {what}: the "
                  "endpoint's requests do not carry its key", (*path, "entity"),
                  help=did_you_mean(j.entity, served) or "use one of the endpoint's entities: "
                  + (", ".join(f"`{n}`" for n in served) or "none (its features have none)"))
        return None, None
    return entity.join_key, int(duration_seconds(j.within or DEFAULT_WITHIN))
