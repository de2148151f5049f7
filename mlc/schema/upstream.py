"""`sources.<name>.producedBy`: the dbt model or Airflow task that writes a source's data."""


from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .types import Seconds, Spec

_JOB = r"^[A-Za-z0-9_.:-]+$"


class DbtModel(Spec):
    project: str = Field(pattern=_JOB, examples=["analytics"])
    """The dbt project (its `name` in dbt_project.yml)."""
    model: str = Field(pattern=_JOB, examples=["fct_transactions"])
    """The dbt model that builds the table."""


class AirflowTask(Spec):
    dag: str = Field(pattern=_JOB, examples=["payments_daily"])
    """The DAG's id."""
    task: str = Field(pattern=_JOB, examples=["publish_transactions"])
    """The task that writes the data."""


class WaitForUpstream(Spec):
    """Before training, wait until the source is fresh (`checks.maxStaleness`)."""

    timeout: Seconds = "2h"
    """Give up (the pipeline fails, nothing is trained) after this long."""
    interval: Seconds = "5m"
    """Look at the newest timestamp this often."""


class ProducedBy(Spec):
    """Exactly one of `dbt`, `airflow`; `wait` makes the training pipeline wait for it."""

    dbt: DbtModel | None = None
    """A dbt model builds this source."""
    airflow: AirflowTask | None = None
    """An Airflow task writes this source."""
    namespace: str | None = Field(None, pattern=_JOB, examples=["airflow-prod"])
    """The OpenLineage namespace the producer's own events use (its integration's
    `OPENLINEAGE_NAMESPACE`); default `dbt` or `airflow`."""
    wait: WaitForUpstream | None = None
    """Wait for fresh data before each training run (a step before `validate-data`)."""

    @model_validator(mode="after")
    def _one(self):
        if (self.dbt is None) == (self.airflow is None):
            raise PydanticCustomError("mlc_one_of", "`producedBy` is exactly one of `dbt`, "
                                      "`airflow`", {})
        return self
