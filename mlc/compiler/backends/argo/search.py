"""A hyperparameter search as Argo tasks: one task per trial, at most `parallelism` at once.

The pipeline's `search` step becomes a small DAG of its own (`search-trials`) whose one task
fans out over the trial numbers (`withSequence`), each pod running the same step contract
with MLC_SEARCH_TRIAL set to its number; Argo's `parallelism` on that DAG bounds how many run
at once. The trial pods are the training step's (hardware, Kueue queue label, secrets), so
trials queue where training queues. The trials share no volume state: each reads the data
that `search-start` fixed and records itself as a child run of the MLflow run it opened.
"""

from __future__ import annotations

from hera.workflows import DAG, Container, Parameter, Resource, Task
from hera.workflows import models as m

from mlc import step_contract as sc

from ...ir import Pipeline, ResolvedProject, Step
from .expressions import SEQUENCE_ITEM, input_parameter
from .katib import katib_step
from .steps import container_step

DAG_SUFFIX = "-trials"
TRIAL_TASK = "trial"
TRIAL_INPUT = "trial"


def dag_name(step: Step) -> str:
    return step.name + DAG_SUFFIX


def task_template(project: ResolvedProject, pipeline: Pipeline, step: Step) -> str:
    """The template the pipeline's `search` task runs: the fan-out DAG, or the step that
    creates the Katib Experiment (katib.py)."""
    if _engine(project, pipeline) == "katib":
        return step.name
    return dag_name(step)


def _engine(project: ResolvedProject, pipeline: Pipeline) -> str:
    search = project.models[pipeline.model].training.search
    assert search is not None, "a search step belongs to a model with `training.search`"
    return search.engine


def search_templates(project: ResolvedProject, pipeline: Pipeline,
                     step: Step) -> tuple[DAG, Container] | tuple[Resource]:
    """The fan-out DAG and the trial's container template (named after the step); with
    `platform.katib`, the step that creates the Experiment and waits for it."""
    if _engine(project, pipeline) == "katib":
        return (katib_step(project, pipeline, step),)
    search = project.models[pipeline.model].training.search
    assert search is not None
    trial = container_step(project, pipeline, step)
    env = [e for e in trial.env if e.name != sc.SEARCH_TRIAL_ENV]
    env.append(m.EnvVar(name=sc.SEARCH_TRIAL_ENV, value=input_parameter(TRIAL_INPUT)))
    trial.env = sorted(env, key=lambda e: e.name)
    trial.inputs = [Parameter(name=TRIAL_INPUT)]
    fan_out = DAG(name=dag_name(step), parallelism=search.parallelism, tasks=[
        Task(name=TRIAL_TASK, template=step.name,
             with_sequence=m.Sequence(count=m.IntOrString(__root__=str(search.trials))),
             arguments=[Parameter(name=TRIAL_INPUT, value=SEQUENCE_ITEM)])])
    return fan_out, trial
