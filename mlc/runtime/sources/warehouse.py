"""Warehouse sources, read through the environment's Feast offline store.

The connection is the one `feature_store.yaml` of the generated Feast repo describes (Feast
expands the `${MLC_OFFLINE_STORE_CONNECTION}` secret into it), so a step reaches the
warehouse exactly as Feast's joins do, with no second copy of its settings. The query is
ours (queries.py); Feast's retrieval job of the store runs it and hands back Arrow. `mlc
validate` has already refused a source that the environment's offline store cannot read
(MLC240), so a mismatch here means a Feast repo from another compile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from mlc.compiler import ir
from mlc.runtime import feast_connection
from mlc.runtime.step import StepContext, StepFailed

from .queries import select_query

# ml.yaml source type -> Feast's offline store `type` in feature_store.yaml.
STORE_TYPES = {"bigquery": "bigquery", "snowflake": "snowflake.offline",
               "redshift": "redshift", "postgres": "postgres", "spark": "spark"}


def repo_config(ctx: StepContext):
    from feast.repo_config import load_repo_config

    repo = ctx.feast_repo
    if repo is None or not (repo / "feature_store.yaml").is_file():
        raise StepFailed("warehouse sources are read through the Feast offline store: set "
                         "MLC_FEAST_REPO to the generated Feast repo (got "
                         f"{repo or 'nothing'})")
    feast_connection.prepare(repo)
    return load_repo_config(repo.resolve(), repo.resolve() / "feature_store.yaml")


def describe(source: ir.Source) -> str:
    o = source.options
    what = f"query of {len(o['query'])} characters" if o.get("query") else \
        (o.get("table") or o.get("path") or "")
    return f"{source.type}: {what}"


def read(ctx: StepContext, source: ir.Source, columns: list[str] | None = None,
         start: dt.datetime | None = None, end: dt.datetime | None = None) -> pa.Table:
    config = repo_config(ctx)
    found = getattr(config.offline_store, "type", None)
    if found != STORE_TYPES[source.type]:
        raise StepFailed(f"source `{source.name}` is a {source.type} source, but the offline "
                         f"store of {ctx.feast_repo} is `{found}`: compile the project again")
    sql = select_query(source, columns, start, end)
    try:
        return _JOBS[source.type](sql, config).to_arrow()
    except StepFailed:
        raise
    except ImportError as exc:
        raise StepFailed(f"reading {source.type} source `{source.name}` needs Feast's "
                         f"{source.type} extra, which this image lacks: {exc}") from exc
    except Exception as exc:  # every driver has its own error types; the message is the point
        raise StepFailed(f"source `{source.name}` ({describe(source)}) cannot be read: "
                         f"{type(exc).__name__}: {exc}") from exc


def _postgres(sql: str, config) -> Any:
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
        PostgreSQLRetrievalJob,
    )
    return PostgreSQLRetrievalJob(query=sql, config=config, full_feature_names=False)


def _bigquery(sql: str, config) -> Any:
    from feast.infra.offline_stores.bigquery import BigQueryRetrievalJob, _get_bigquery_client

    store = config.offline_store
    client = _get_bigquery_client(project=store.billing_project_id or store.project_id,
                                  location=store.location)
    return BigQueryRetrievalJob(query=sql, client=client, config=config,
                                full_feature_names=False)


def _snowflake(sql: str, config) -> Any:
    from feast.infra.offline_stores.snowflake import SnowflakeRetrievalJob
    from feast.infra.utils.snowflake.snowflake_utils import GetSnowflakeConnection

    with GetSnowflakeConnection(config.offline_store) as conn:
        return _Fetched(SnowflakeRetrievalJob(query=sql, snowflake_conn=conn, config=config,
                                              full_feature_names=False).to_arrow())


def _redshift(sql: str, config) -> Any:
    from feast.infra.offline_stores.redshift import RedshiftRetrievalJob
    from feast.infra.utils import aws_utils

    region = config.offline_store.region
    return RedshiftRetrievalJob(query=sql,
                                redshift_client=aws_utils.get_redshift_data_client(region),
                                s3_resource=aws_utils.get_s3_resource(region), config=config,
                                full_feature_names=False)


def _spark(sql: str, config) -> Any:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
        SparkRetrievalJob,
        get_spark_session_or_start_new_with_repoconfig,
    )
    session = get_spark_session_or_start_new_with_repoconfig(config.offline_store)
    return SparkRetrievalJob(spark_session=session, query=sql, full_feature_names=False,
                             config=config)


class _Fetched:
    """A result already read while its connection was open."""

    def __init__(self, table: pa.Table):
        self.table = table

    def to_arrow(self) -> pa.Table:
        return self.table


_JOBS: dict[str, Callable[[str, Any], Any]] = {
    "postgres": _postgres, "bigquery": _bigquery, "snowflake": _snowflake,
    "redshift": _redshift, "spark": _spark,
}
