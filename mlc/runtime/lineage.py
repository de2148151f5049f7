"""OpenLineage run events of one pipeline step, sent through the openlineage-python client.

Every step of a project with `platform.lineage` sends START before its work and COMPLETE or
FAIL after it (docs/lineage.md). The job is `<pipeline>.<step>` in the project's namespace;
its parent run is the pipeline run (one id for all steps of one run, derived from the run's
name, so that the steps of an Argo workflow and of `mlc run` group the same way). Inputs are
the sources the model reads (for a `dataset:` model, its files or its table's source), with
ml.yaml's columns as the schema facet and, where ml.yaml says so, the job that produces them;
outputs are what the step writes (the registered model).

Without `platform.lineage` this module is never imported: no client, no events.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from mlc import __version__
from mlc import step_contract as sc
from mlc.compiler import ir

PRODUCER = f"urn:mlc:runtime:{__version__}"
# Stable ids: the same run and step always map to the same OpenLineage run id.
_IDS = uuid.UUID("6f1b3a52-6c53-4b5e-9a57-1d8f7f0c2a11")
# What a step reads and writes, by kind: the model's sources, and the registered model.
_READS_SOURCES = ("wait_upstream", "validate_data", "materialize", "search_start", "search",
                  "train", "batch_score", "drift_check")
_READS_MODEL = ("evaluate", "explain", "register", "promote", "batch_score")
_WRITES_MODEL = ("train", "register", "promote")
log = logging.getLogger(__name__)


def run_id(*parts: str) -> str:
    return str(uuid.uuid5(_IDS, "/".join(parts)))


def transport_config(lineage: ir.Lineage, run_dir: Path) -> dict[str, Any]:
    if lineage.transport == "file":
        path = Path(lineage.path or "lineage.jsonl")
        path = path if path.is_absolute() else run_dir / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return {"type": "file", "log_file_path": str(path), "append": True}
    if lineage.transport == "http":
        # a few quick tries: a step never waits long on a lineage server that is down
        config: dict[str, Any] = {"type": "http", "url": lineage.url,
                                  "endpoint": lineage.endpoint, "timeout": 5,
                                  "retry": {"total": 2, "backoff_factor": 0.2,
                                            "allowed_methods": ["POST"],
                                            "status_forcelist": [500, 502, 503, 504]}}
        if token := os.environ.get(sc.LINEAGE_API_KEY_ENV):
            config["auth"] = {"type": "api_key", "apiKey": token}
        return config
    # the client flushes after each event; a broker that is down gives up after 5 s, not
    # librdkafka's default of 5 minutes
    return {"type": "kafka", "topic": lineage.topic, "flush": True,
            "config": {"bootstrap.servers": lineage.bootstrap_servers,
                       "message.timeout.ms": "5000"}}


def _dataset_id(ctx, source: ir.Source) -> tuple[str, str]:
    """OpenLineage's naming: a file is `file` + absolute path, an object `s3://bucket` +
    key; a warehouse table is the system and the table (its host lives in a secret)."""
    from mlc.runtime import sources

    if source.type == "file":
        location = sources.location(ctx, source)
        if "://" in location:
            scheme, _, rest = location.partition("://")
            bucket, _, key = rest.partition("/")
            return f"{scheme}://{bucket}", key
        return "file", str(Path(location).resolve())
    table = source.options.get("table") or source.options.get("path")
    if source.type in ("snowflake", "redshift"):
        db = source.options.get("database")
        table = ".".join(p for p in (db, source.options.get("db_schema"), table) if p)
    return source.type, table or f"{source.name} (query)"


def _schema_facet(source: ir.Source):
    from openlineage.client.facet_v2 import schema_dataset

    return schema_dataset.SchemaDatasetFacet(fields=[
        schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.type)
        for c in source.columns], producer=PRODUCER)


def input_datasets(ctx) -> list:
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import documentation_dataset

    from mlc.runtime.train.validation import sources_of

    if not ctx.pipeline.model:
        return []
    model = ctx.project.models[ctx.pipeline.model]
    out = []
    reads = ctx.step.kind in _READS_SOURCES
    if reads and model.dataset is not None and model.dataset.kind != "table":
        out.append(_training_dataset(ctx, model.dataset, InputDataset))
    for name in sources_of(model, ctx.project) if reads else []:
        source = ctx.project.sources[name]
        namespace, dataset = _dataset_id(ctx, source)
        facets: dict[str, Any] = {"schema": _schema_facet(source)}
        if source.description:
            facets["documentation"] = documentation_dataset.DocumentationDatasetFacet(
                description=source.description, producer=PRODUCER)
        if source.produced_by is not None:
            facets["producedBy"] = _produced_by_facet(source.produced_by)
        if source.version is not None:  # the commit or version id the step reads
            from openlineage.client.facet_v2 import dataset_version_dataset

            from mlc.runtime.sources import versions

            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=versions.resolve(ctx, source)["resolved"], producer=PRODUCER)
        out.append(InputDataset(namespace=namespace, name=dataset, facets=facets))
    if ctx.step.kind in _READS_MODEL:
        out.append(_model_dataset(ctx, model, InputDataset))
    return out


PRODUCED_BY_SCHEMA = "urn:mlc:facets:ProducedByDatasetFacet:1"


def _produced_by_facet(upstream: ir.Upstream):
    """A custom dataset facet: the job that writes the dataset, named as that job's own
    OpenLineage integration names it, so a lineage server joins the two graphs."""
    import attr
    from openlineage.client.facet_v2 import DatasetFacet

    @attr.define
    class ProducedByDatasetFacet(DatasetFacet):
        tool: str
        jobNamespace: str  # noqa: N815 (OpenLineage's camelCase)
        jobName: str  # noqa: N815

        @staticmethod
        def _get_schema() -> str:
            return PRODUCED_BY_SCHEMA

    return ProducedByDatasetFacet(tool=upstream.tool, jobNamespace=upstream.namespace,
                                  jobName=upstream.job, producer=PRODUCER)


def _training_dataset(ctx, d: ir.Dataset, kind):
    """A `generative` or `custom` model's `dataset:` of files or a Hugging Face-style folder,
    named as its files are (a table dataset is its source, named as sources are); the
    documentation facet says what kind and format the trainer is handed."""
    from openlineage.client.facet_v2 import documentation_dataset

    from mlc.runtime.train.custom import dataset_env

    uri = dataset_env(d, ctx.data_root)[sc.DATASET_URI_ENV]
    if "://" in uri:
        scheme, _, rest = uri.partition("://")
        bucket, _, key = rest.partition("/")
        namespace, name = f"{scheme}://{bucket}", key
    else:
        namespace, name = "file", uri
    what = f"{d.kind} dataset" + (f" ({d.format})" if d.format else "")
    return kind(namespace=namespace, name=name, facets={
        "documentation": documentation_dataset.DocumentationDatasetFacet(
            description=f"training data: {what}", producer=PRODUCER)})


def _model_dataset(ctx, model: ir.Model, kind):
    return kind(namespace=ctx.mlflow_tracking_uri, name=f"models/{model.registered_name}")


def output_datasets(ctx) -> list:
    from openlineage.client.event_v2 import OutputDataset

    if ctx.pipeline.model and ctx.step.kind in _WRITES_MODEL:
        return [_model_dataset(ctx, ctx.project.models[ctx.pipeline.model], OutputDataset)]
    return []


class StepLineage:
    """The events of one step: `start()`, then `complete()` or `fail(message)`."""

    def __init__(self, ctx):
        from openlineage.client import OpenLineageClient

        lineage = ctx.project.platform.lineage
        self.ctx, self.namespace = ctx, lineage.namespace
        self.client = OpenLineageClient(config={"transport": transport_config(
            lineage, ctx.run_dir)})
        pipeline = ctx.pipeline.name
        self.parent_id = run_id(lineage.namespace, pipeline, ctx.run_id)
        self.run_id = run_id(lineage.namespace, pipeline, ctx.run_id, ctx.step.name)
        self.job_name = f"{pipeline}.{ctx.step.name}"

    def _event(self, state: str, run_facets: dict[str, Any] | None = None):
        import datetime as dt

        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import job_type_job, parent_run

        parent = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=self.parent_id),
            job=parent_run.Job(namespace=self.namespace, name=self.ctx.pipeline.name),
            producer=PRODUCER)
        job_type = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="MLC",
                                                jobType=self.ctx.step.kind.upper(),
                                                producer=PRODUCER)
        return RunEvent(
            eventType=getattr(RunState, state),
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=Run(runId=self.run_id, facets={"parent": parent, **(run_facets or {})}),
            job=Job(namespace=self.namespace, name=self.job_name,
                    facets={"jobType": job_type}),
            inputs=input_datasets(self.ctx), outputs=output_datasets(self.ctx),
            producer=PRODUCER)

    def _emit(self, event) -> None:
        try:
            self.client.emit(event)
        except Exception as exc:  # lineage is a record of the work, never a reason to stop it
            log.warning("lineage: could not send the %s event: %s", event.eventType, exc)

    def start(self) -> None:
        self._emit(self._event("START"))

    def complete(self) -> None:
        self._emit(self._event("COMPLETE"))

    def fail(self, message: str) -> None:
        from openlineage.client.facet_v2 import error_message_run

        error = error_message_run.ErrorMessageRunFacet(
            message=message[:4000], programmingLanguage="python", producer=PRODUCER)
        self._emit(self._event("FAIL", {"errorMessage": error}))
