"""Sources produced upstream (`producedBy`: a dbt model, an Airflow task).

A source that waits for its producer puts a `wait-for-upstream` step before the training
pipeline's data checks (the WorkflowTemplate is checked against Argo's CRD schema, and the
step's container command runs as a process, as a cluster would run it); the step's wait is
tested with a clock and a sleep handed in, so a producer that writes fresh data while the
step waits is seen, and one that never does fails the run. The producer is named in the
lineage events of the steps that read the source.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mlc.compiler import ir
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment, compile_project
from mlc.runtime.step import EXIT_BAD_DATA, StepFailed, build_context, run_step
from mlc.runtime.train import upstream

from .bad_inputs import BASE
from .cluster_pods import Cluster, Image, read_tree
from .conftest import write_project
from .schema_check import check_crd, require_schemas

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PRODUCED = ("    producedBy:\n      dbt: {project: analytics, model: fct_events}\n"
            "      wait: {timeout: 1h, interval: 10m}\n    checks: {maxStaleness: 1d}\n")


def project_files() -> dict[str, str]:
    old = "    path: data/events.parquet\n"
    assert BASE.count(old) == 1
    return {"ml.yaml": BASE.replace(old, old + PRODUCED)}


def write_events(folder: Path, newest: dt.datetime) -> None:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"user_id": [1, 2], "event_timestamp": [newest - dt.timedelta(
        days=3), newest], "clicks": [3, 4], "label": [0, 1]}), folder / "data" / "events.parquet")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project", project_files())


def context(folder: Path, step: str = "wait-for-upstream", resolved=None):
    resolved = resolved or check_environment(folder, "default", Diagnostics())
    assert resolved is not None
    return build_context(resolved, "train-churn", step, environ={
        "MLC_DATA_ROOT": str(folder), "MLC_RUN_DIR": str(folder / "run")})


def test_the_pipeline_waits_before_its_data_checks(project):
    (compiled,) = compile_project(project, None, Diagnostics())
    source = compiled.project.sources["events"]
    assert source.produced_by == ir.Upstream(tool="dbt", namespace="dbt",
                                             job="analytics.fct_events",
                                             wait_timeout_seconds=3600,
                                             wait_interval_seconds=600)
    steps = {s.name: s for s in compiled.project.pipelines["train-churn"].steps}
    assert steps["wait-for-upstream"].depends == []
    assert steps["validate-data"].depends == ["wait-for-upstream"]
    assert steps["wait-for-upstream"].retries.limit == 0
    docs = [d for path, body in compiled.files.items() if path.endswith(".yaml")
            for d in yaml.safe_load_all(body.decode()) if isinstance(d, dict)]
    (wt,) = [d for d in docs if d.get("kind") == "WorkflowTemplate"
             and d["metadata"]["name"] == "train-churn"]
    require_schemas()
    assert check_crd(wt, "argo-workflows/argoproj.io_workflowtemplates.yaml") == []
    dag = next(t for t in wt["spec"]["templates"] if "dag" in t)["dag"]["tasks"]
    by_name = {t["name"]: t for t in dag}
    assert "wait-for-upstream" in by_name
    assert by_name["validate-data"]["dependencies"] == ["wait-for-upstream"]


def test_fresh_data_goes_on_at_once(project):
    write_events(project, NOW - dt.timedelta(hours=2))
    slept = []
    upstream.wait(context(project), clock=lambda: NOW, sleep=slept.append)
    assert slept == []


def test_the_wait_ends_when_the_producer_writes(project, capsys):
    write_events(project, NOW - dt.timedelta(days=2))  # yesterday's run has not landed yet
    times = iter([NOW, NOW, NOW + dt.timedelta(minutes=10)])

    def producer_runs(seconds: float) -> None:
        assert seconds == 600
        write_events(project, NOW)  # the dbt model is built while the step sleeps

    upstream.wait(context(project), clock=lambda: next(times), sleep=producer_runs)
    out = capsys.readouterr().out
    assert "waiting: source events (produced by dbt analytics.fct_events)" in out
    assert out.strip().endswith("fresh: events")


def test_no_fresh_data_within_the_timeout_fails_the_run(project):
    write_events(project, NOW - dt.timedelta(days=5))
    clock = iter([NOW + dt.timedelta(minutes=10 * i) for i in range(20)])
    with pytest.raises(StepFailed) as failed:
        upstream.wait(context(project), clock=lambda: next(clock), sleep=lambda s: None)
    assert failed.value.exit_code == EXIT_BAD_DATA
    assert "still not fresh after 3600s" in failed.value.message
    assert "source events (produced by dbt analytics.fct_events)" in failed.value.message


def test_a_missing_file_is_waited_for_too(project):
    clock = iter([NOW, NOW, NOW + dt.timedelta(hours=2)])
    with pytest.raises(StepFailed) as failed:
        upstream.wait(context(project), clock=lambda: next(clock), sleep=lambda s: None)
    assert "no rows yet" in failed.value.message


def test_lineage_names_the_producer(project):
    from .test_lineage import check_event, schema_registry

    write_events(project, dt.datetime.now(dt.UTC))  # the data step checks freshness too
    resolved = check_environment(project, "default", Diagnostics())
    platform = resolved.platform.model_copy(update={"lineage": ir.Lineage(
        transport="file", namespace="mlc.demo", path="events.jsonl")})
    plain = {n: s.model_copy(update={"expectations": []}) for n, s in resolved.sources.items()}
    resolved = resolved.model_copy(update={"platform": platform, "sources": plain})
    run_step(context(project, "validate-data", resolved))
    events = [json.loads(line) for line in
              (project / "run" / "events.jsonl").read_text().splitlines()]
    registry = schema_registry()
    for event in events:
        check_event(event, registry)
    (dataset,) = events[0]["inputs"]
    facet = dataset["facets"]["producedBy"]
    assert (facet["tool"], facet["jobNamespace"], facet["jobName"]) == \
        ("dbt", "dbt", "analytics.fct_events")


@pytest.mark.slow
def test_the_wait_step_runs_as_its_pod(tmp_path, project):
    """The compiled step as a process, lineage on: its events land where the pod writes."""
    from .cluster_pods import mlc_compile
    from .test_lineage import check_event, schema_registry

    text = (project / "ml.yaml").read_text()
    (project / "ml.yaml").write_text(text.replace(
        "  imagePolicy: tag\n", "  imagePolicy: tag\n  lineage: {transport: file, path: "
        "lineage/events.jsonl}\n", 1))
    tree = read_tree(mlc_compile(project, "default", tmp_path / "deploy"))
    (wt,) = [d for d in tree if d.get("kind") == "WorkflowTemplate"
             and d["metadata"]["name"] == "train-churn"]
    image = next(t["container"]["image"] for t in wt["spec"]["templates"] if "container" in t)
    workdir = tmp_path / "image"
    workdir.mkdir()
    cluster = Cluster(tree, tmp_path / "cluster", images={image: Image(workdir)},
                      namespace=wt["metadata"]["namespace"])
    run_dir = cluster.claim("wf-1-run")
    write_events(run_dir, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    (task,) = cluster.submit("train-churn", "wf-1", {}, until="wait-for-upstream")
    assert task.name == "wait-for-upstream" and task.returncode == 0
    assert "fresh: events" in task.log
    events = [json.loads(line) for line in
              (run_dir / "lineage" / "events.jsonl").read_text().splitlines()]
    assert [(e["eventType"], e["job"]["name"]) for e in events] == [
        ("START", "train-churn.wait-for-upstream"), ("COMPLETE", "train-churn.wait-for-upstream")]
    assert events[0]["run"]["facets"]["parent"]["job"]["name"] == "train-churn"
    registry = schema_registry()
    for event in events:
        check_event(event, registry)
