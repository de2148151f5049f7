"""Can each step read the sources it names? Checked here, not found out at run time.

The runtimes read a file source with pyarrow and any other batch source with a query run
by the environment's Feast offline store (mlc/runtime/sources/), and a stream source
through its `batchSource`. An offline store reads only tables of its own kind, so a label
source, a batch-scoring input or a drift window in a BigQuery table cannot be read by an
environment whose offline store is Postgres. Feature views are checked with the store
itself (features.check_feast_support); this covers what steps read outside the views.
"""

from __future__ import annotations

from .. import ir
from .context import Context

UNREADABLE_SOURCE = "MLC240"


def check_step_sources(ctx: Context, platform: ir.Platform, sources: dict[str, ir.Source],
                       models: dict[str, ir.Model], endpoints: dict[str, ir.Endpoint],
                       checks: dict[str, ir.DriftCheck],
                       quality: dict[str, ir.QualityMonitor] | None = None) -> None:
    wanted: list[tuple[str, str, tuple]] = []
    for name, model in sorted(models.items()):
        wanted.append((model.label_source, f"model `{name}` (labels, data validation)",
                       ("models", name, "label", "source")))
    for name, endpoint in sorted(endpoints.items()):
        if endpoint.batch is not None:
            wanted.append((endpoint.batch.input_source, f"batch endpoint `{name}`",
                           ("serving", name, "batch", "input")))
        if endpoint.rollout.verdict is not None:
            wanted.append((endpoint.rollout.verdict.labels_source, f"the verdict of `{name}`",
                           ("serving", name, "rollout", "verdict", "labels")))
    for name, monitor in sorted((quality or {}).items()):
        wanted.append((monitor.labels_source, f"quality monitor `{name}`",
                       ("monitoring", "quality", name, "labels")))
    for name, check in sorted(checks.items()):
        if check.current_source:
            wanted.append((check.current_source, f"drift check `{name}`",
                           ("monitoring", "drift", name, "current", "source")))
        if check.reference_source:
            wanted.append((check.reference_source, f"drift check `{name}`",
                           ("monitoring", "drift", name, "reference", "source")))
    offline = platform.offline_store_type
    for source_name, reader, path in wanted:
        source = sources.get(source_name)
        if source is None:
            continue  # an unknown name is reported where it is resolved
        batch = sources.get(source.batch_source) if source.batch_source else source
        if batch is None or batch.type == "file" or batch.type == offline:
            continue
        via = f" (through its batchSource `{batch.name}`)" if batch is not source else ""
        ctx.error(UNREADABLE_SOURCE, f"{reader} reads source `{source_name}`{via}, a "
                  f"{batch.type} table, but this environment's offline store is {offline}, "
                  f"which reads only {offline} tables", path,
                  help=f"set `platform.featureStore.offlineStore.type: {batch.type}` in this "
                  "environment, or point it at a file source or a table the store reads")
