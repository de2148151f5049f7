"""Sources produced upstream (`producedBy`: a dbt model, an Airflow task), and the step that
waits for them.

The producer is named for lineage (the input dataset's producing job, in the namespace its
own OpenLineage integration reports to). `wait` adds a `wait-for-upstream` step before a
training pipeline's `validate-data`: it polls the source until its newest timestamp is
within `checks.maxStaleness` (what "the upstream job has run" means to training), or fails
the run after `timeout`. Waiting on the data rather than on the scheduler works the same for
dbt and Airflow and needs no credentials to either.
"""

from __future__ import annotations

from ...schema.types import duration_seconds
from .. import ir
from .context import Context

WAIT_NEEDS_FRESHNESS = "MLC553"
WAIT_STEP = "wait-for-upstream"


def upstream(ctx: Context, name: str, source) -> ir.Upstream | None:
    produced = source.produced_by
    if produced is None:
        return None
    if produced.dbt is not None:
        tool, job = "dbt", f"{produced.dbt.project}.{produced.dbt.model}"
    else:
        tool, job = "airflow", f"{produced.airflow.dag}.{produced.airflow.task}"
    timeout = interval = None
    if produced.wait is not None:
        if source.checks.max_staleness is None:
            ctx.error(WAIT_NEEDS_FRESHNESS, f"source `{name}` waits for {tool} but says "
                      "nothing about how fresh its data must be",
                      ("sources", name, "producedBy", "wait"),
                      help="add `checks: {maxStaleness: 1d}` (the age of the newest row that "
                      "counts as produced), or drop `wait`")
        timeout = int(duration_seconds(produced.wait.timeout))
        interval = max(1, int(duration_seconds(produced.wait.interval)))
    return ir.Upstream(tool=tool, namespace=produced.namespace or tool, job=job,
                       wait_timeout_seconds=timeout, wait_interval_seconds=interval)


def model_sources(model: ir.Model, views: dict[str, ir.FeatureView]) -> list[str]:
    names = [model.label_source]
    for ref in model.features:
        view = views.get(ref.view)
        if view is not None and view.source not in names:
            names.append(view.source)
    return names


def add_upstream_waits(pipelines: dict[str, ir.Pipeline], models: dict[str, ir.Model],
                       views: dict[str, ir.FeatureView], sources: dict[str, ir.Source]
                       ) -> dict[str, ir.Pipeline]:
    """Each training pipeline whose sources wait for their producer starts with the wait."""
    out = {}
    for name, pipeline in pipelines.items():
        model = models.get(pipeline.model or "")
        waits = [] if pipeline.kind != "training" or model is None else [
            sources[s].produced_by for s in model_sources(model, views)
            if s in sources and sources[s].produced_by
            and sources[s].produced_by.wait_timeout_seconds is not None]
        first = next((s for s in pipeline.steps if s.name == "validate-data"), None)
        if not waits or first is None:
            out[name] = pipeline
            continue
        timeout = max(w.wait_timeout_seconds or 0 for w in waits)
        wait = first.model_copy(update={
            "name": WAIT_STEP, "kind": "wait_upstream", "depends": [], "parameters": [],
            "args": [*first.args[:-1], WAIT_STEP],
            # the step's own deadline is the wait's; Argo's is a little later, and a wait
            # that timed out is not retried (it already waited as long as it was told)
            "timeout_seconds": timeout + 300,
            "retries": first.retries.model_copy(update={"limit": 0})})
        steps = [wait, *(s.model_copy(update={"depends": [WAIT_STEP]})
                         if s.name == "validate-data" else s for s in pipeline.steps)]
        out[name] = pipeline.model_copy(update={"steps": steps})
    return out
