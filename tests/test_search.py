"""Hyperparameter search (`training.search`), proven by running it.

- resolve: the IR's search (defaults filled, grid size) and the pipeline's steps;
- the WorkflowTemplate: trials fan out as Argo tasks (`withSequence`, `parallelism`) under the
  training step's Kueue queue, valid for hera and Argo's CRD schema;
- the compiled WorkflowTemplate run as local processes (tests/cluster_pods.py): the trial
  pods' commands as declared, each trial an MLflow child run, the best trial's values trained,
  gated and registered as @challenger;
- `mlc run`: the same steps on this machine, Optuna in-process (tests/test_lifecycle_run.py).
The bad ranges, metrics and trainers are tests/bad_inputs.py cases (MLC530-MLC536).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hera.workflows import models as hera_models

from mlc import step_contract as sc
from mlc.compiler.backends.argo.expressions import literal
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment

from . import argo_projects as ap
from . import lifecycle_projects as lp
from .cluster_pods import Cluster, Image, mlc_compile, read_tree
from .schema_check import check_crd

SPACE = {"learningRate": {"type": "loguniform", "low": 0.001, "high": 0.1},
         "hiddenLayers": {"type": "choice", "values": [[4], [8]]}}
SEARCH = {"method": "tpe", "metric": "roc_auc", "trials": 3, "parallelism": 2, "space": SPACE}
GPU_QUEUE = {"hardware": {"gpu": {"cpu": "1", "memory": "1Gi", "queue": "ml-training"}}}


def training(**search) -> dict:
    return {"training": {"builtin": {"hiddenLayers": [8], "epochs": 2, "batchSize": 64},
                         "search": {**SEARCH, **search}}}


def resolve(folder: Path, model: dict, extra: dict | None = None):
    lp.write(folder, model)
    if extra:
        values = ap.merge(lp.values(model), extra)
        (folder / "ml.yaml").write_text(json.dumps(values), "utf-8")
    diags = Diagnostics()
    resolved = check_environment(folder, lp.ENV, diags)
    assert resolved is not None and not diags.has_errors(), [d.message for d in diags.items]
    return resolved


def test_the_search_is_resolved_and_runs_before_training(tmp_path):
    project = resolve(tmp_path, training(trials=None, parallelism=8))
    search = project.models[lp.MODEL].training.search
    assert search.trials == 20 and search.parallelism == 8 and search.higher_is_better
    assert [r.name for r in search.space] == ["hidden_layers", "learning_rate"]
    steps = project.pipelines[lp.PIPELINE].steps
    assert [(s.name, s.depends) for s in steps][2:5] == [
        ("search-start", ["materialize"]), ("search", ["search-start"]), ("train", ["search"])]
    # a grid's trials default to its combinations; parallelism never exceeds the trials
    grid = resolve(tmp_path / "grid", training(
        method="grid", trials=None, parallelism=50,
        space={"epochs": {"type": "int", "low": 1, "high": 5, "step": 2},
               "hiddenLayers": {"type": "choice", "values": [[4], [8]]}}))
    search = grid.models[lp.MODEL].training.search
    assert (search.trials, search.parallelism) == (6, 6)
    assert resolve(tmp_path / "none", {}).models[lp.MODEL].training.search is None


def test_trials_fan_out_as_argo_tasks_under_the_training_queue(tmp_path):
    project = resolve(tmp_path, training(), {
        **GPU_QUEUE, "models": {lp.MODEL: {"training": {
            "hardware": "gpu", "builtin": {"env": {"HINT": "{{workflow.name}}"}}}}}})
    (wt,) = ap.emit(project)[f"argo/workflowtemplate-{lp.PIPELINE}.yaml"]
    assert check_crd(wt, "argo-workflows/argoproj.io_workflowtemplates.yaml") == []
    model = hera_models.WorkflowTemplate.parse_obj(wt)
    assert model.dict(by_alias=True, exclude_none=True) == wt
    main = ap.template(wt, "pipeline")["dag"]["tasks"]
    assert {t["name"]: t["template"] for t in main}["search"] == "search-trials"
    fan_out = ap.template(wt, "search-trials")
    assert fan_out["parallelism"] == 2
    (task,) = fan_out["dag"]["tasks"]
    assert task["withSequence"] == {"count": "3"} and task["template"] == "search"
    assert task["arguments"]["parameters"] == [{"name": "trial", "value": "{{item}}"}]
    trial = ap.template(wt, "search")
    train = ap.template(wt, "train")
    # the same pod as the training step: queue, resources, command; plus its trial number
    assert trial["metadata"]["labels"] == train["metadata"]["labels"] == {
        "kueue.x-k8s.io/queue-name": "ml-training"}
    assert trial["container"]["resources"] == train["container"]["resources"]
    assert trial["container"]["command"] == ["python", "-m", "mlc.runtime", "step"]
    assert trial["container"]["args"][-2:] == ["--step", "search"]
    assert trial["inputs"] == {"parameters": [{"name": "trial"}]}
    assert ap.env(trial["container"])[sc.SEARCH_TRIAL_ENV]["value"] == \
        "{{inputs.parameters.trial}}"
    assert sc.SEARCH_TRIAL_ENV not in ap.env(train["container"])
    # the user's text reaches the trial pods as inert as the training pod's
    assert ap.env(trial["container"])["HINT"] == ap.env(train["container"])["HINT"] == {
        "name": "HINT", "value": literal("{{workflow.name}}")}


def trial_runs(client, parent: str) -> list:
    from mlc.runtime.train import search_runs as sr

    experiment = client.get_run(parent).info.experiment_id
    return sr.trials(client, experiment, parent)


def check_the_search(tracking_uri: str, run_dir: Path, trials: int) -> None:
    """Every trial a finished child run; the registered @challenger trained with the best
    trial's values, and (same values, same seed) it reproduces the best trial's metric."""
    from mlflow.tracking import MlflowClient

    from mlc.runtime.train import search_runs as sr

    client = MlflowClient(tracking_uri)
    record = json.loads((run_dir / sc.REGISTER_FILE).read_text())
    version = client.get_model_version_by_alias(record["name"], "challenger")
    parent = client.get_run(version.run_id)
    found = trial_runs(client, parent.info.run_id)
    assert sorted(t.number for t in found) == list(range(trials))
    assert {t.state for t in found} == {sr.COMPLETE} and all(t.status == "FINISHED"
                                                              for t in found)
    best = max(found, key=lambda t: (t.value, -t.number))
    assert parent.data.tags[sr.TAG_BEST_TRIAL] == str(best.number)
    assert float(parent.data.params["learning_rate"]) == best.drawn["learning_rate"]
    assert json.loads(parent.data.params["hidden_layers"]) == json.loads(
        best.drawn["hidden_layers"])
    for t in found:  # each child holds its own values and its metric per epoch
        child = client.get_run(t.run_id)
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert json.loads(child.data.params["hidden_layers"]) == json.loads(
            t.drawn["hidden_layers"])
        history = client.get_metric_history(t.run_id, "val_roc_auc")
        assert [m.step for m in history] == [1, 2] and history[-1].value == t.value
    assert parent.data.metrics["val_roc_auc"] == pytest.approx(best.value, abs=1e-9)
    assert len({t.drawn["learning_rate"] for t in found}) == trials  # seeded per trial


@pytest.mark.slow
def test_the_compiled_workflow_runs_its_trials_then_the_gated_training_as_pods(tmp_path):
    """Slow (every pod is a new process importing Feast, MLflow and torch): the only proof
    that the pods' command, env and mounts work as Argo runs them, for the trials and for
    what follows them: the best trial's training, the evaluation with fairness and slice
    gates, the SHAP explanation and the registration."""
    from mlflow.tracking import MlflowClient

    from mlc.runtime.train import search_runs as sr

    from .test_fairness import EVALUATION

    # two trials, both at once: one round of trial pods
    model = {**training(trials=2),
             "evaluation": {**EVALUATION, "explain": {"samples": 40, "background": 20}}}
    values = lp.values(model)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    values["platform"]["mlflow"]["trackingUri"] = tracking
    folder = lp.write(tmp_path / "project", data=lp.rows(1000))
    (folder / "ml.yaml").write_text(json.dumps(values), "utf-8")
    tree = mlc_compile(folder, lp.ENV, tmp_path / "deploy")
    workdir = tmp_path / "image-mlc"
    workdir.mkdir()
    workdir.chmod(0o555)
    cluster = Cluster(read_tree(tree), tmp_path / "cluster",
                      images={lp.TRAIN_IMAGE: Image(workdir)}, namespace="mlc-tiny")
    workflow = f"{lp.PIPELINE}-x1"
    run_dir = cluster.claim(f"{workflow}-run")
    (run_dir / "data").mkdir()
    (run_dir / "data" / "rows.parquet").write_bytes((folder / "data/rows.parquet").read_bytes())
    ran = cluster.submit(lp.PIPELINE, workflow, {})
    names = [t.name for t in ran]
    trials = [f"{workflow}-search-trial-{i}" for i in range(2)]
    assert names[:5] == ["validate-data", "materialize", "search-start", *trials], names
    assert {"train", "evaluate", "explain", "register"} <= set(names[5:]), names
    logs = {t.name: t.log for t in ran}
    assert "trial 1: complete" in logs[trials[1]] and "trial 0" not in logs[trials[1]]
    parent = json.loads((run_dir / sc.MLFLOW_RUN_FILE).read_text())["run_id"]
    client = MlflowClient(tracking)
    found = trial_runs(client, parent)
    assert [(t.number, t.state, t.status) for t in found] == [
        (0, sr.COMPLETE, "FINISHED"), (1, sr.COMPLETE, "FINISHED")]
    assert found[0].drawn != found[1].drawn  # each pod drew its own trial's values
    run = client.get_run(parent)
    assert run.data.params["search_trials"] == "2"
    # the best trial's values trained the model that was gated (fairness and slices),
    # explained and registered as @challenger, each step as its pod
    check_the_search(tracking, run_dir, 2)
    evaluation = json.loads((run_dir / sc.EVALUATION_FILE).read_text())
    assert evaluation["passed"]
    assert [(s["value"], s["passed"]) for s in evaluation["slices"]] == [(0, True), (1, True)]
    metrics = run.data.metrics
    assert {"test_demographic_parity_difference", "test_equalized_odds_difference",
            "test_slice_group_0_accuracy"} <= set(metrics), sorted(metrics)
    assert {k for k in metrics if k.startswith("shap_")} == {"shap_x1", "shap_x2",
                                                             "shap_group"}
    artifacts = {a.path for a in client.list_artifacts(parent, "mlc")}
    assert {"mlc/explain.json", "mlc/explain.html", "mlc/evaluation.json"} <= artifacts


def test_parallel_trials_warn_on_a_one_node_volume_and_are_priced_per_trial(tmp_path):
    from mlc.compiler.cost.estimate import estimate

    def check(folder: Path, extra: dict) -> tuple[list[str], float]:
        lp.write(folder, {**training(), "training": {
            **training()["training"], "schedule": "0 3 * * *", "expectedDuration": "1h"}})
        values = ap.merge(lp.values({**training(), "training": {
            **training()["training"], "schedule": "0 3 * * *", "expectedDuration": "1h"}}),
            extra)
        (folder / "ml.yaml").write_text(json.dumps(values), "utf-8")
        diags = Diagnostics()
        project = check_environment(folder, lp.ENV, diags)
        assert project is not None and not diags.has_errors()
        line = next(x for x in estimate(json.loads(project.model_dump_json())).lines
                    if x.subject == f"pipelines.{lp.PIPELINE}")
        return [d.code for d in diags.items], line.low

    codes, with_search = check(tmp_path / "rwo", {})
    assert "MLC537" in codes
    codes, _ = check(tmp_path / "rwx", {"platform": {"runVolume":
                                                     {"accessMode": "ReadWriteMany"}}})
    assert "MLC537" not in codes
    # each trial costs one training's expected hour on the training hardware
    costs = [check(tmp_path / f"t{n}", {"models": {lp.MODEL: {"training": {"search": {
        "trials": n, "parallelism": 1}}}}})[1] for n in (1, 2)]
    assert with_search - costs[1] == pytest.approx(costs[1] - costs[0])
    assert costs[1] - costs[0] > 0


def ir_search(**changes):
    from mlc.compiler import ir

    base = dict(method="tpe", engine="argo", katib_namespace=None, trials=4, parallelism=1,
                metric="roc_auc", higher_is_better=True, pruning=False, seed=0, space=[
                    ir.SearchRange(name="epochs", type="int", low=1, high=3, step=2, values=None),
                    ir.SearchRange(name="hidden_layers", type="choice", low=None, high=None,
                                   step=None, values=[[4], [8]])])
    return ir.Search(**{**base, **changes})


def test_random_trials_draw_within_the_space_and_each_trial_redraws_the_same():
    """`method: random`: Optuna's RandomSampler seeded by the search's seed and the trial's
    number, so that a retried trial pod draws what it drew before, and trials differ."""
    import optuna

    from mlc.compiler import ir
    from mlc.runtime.train import search as rs
    from mlc.runtime.train import search_runs as sr

    search = ir_search(method="random", trials=8, space=[
        *ir_search().space, ir.SearchRange(name="learning_rate", type="loguniform", low=1e-4,
                                           high=1e-1, step=None, values=None)])
    study = rs.study_for(search, 0, [])
    assert isinstance(study.sampler, optuna.samplers.RandomSampler)

    def draw(n: int) -> dict:
        return sr.decode(search, rs.study_for(search, n, []).ask(
            rs.distributions(search)).params)

    drawn = [draw(n) for n in range(8)]
    assert drawn == [draw(n) for n in range(8)]  # a retried trial redraws the same
    assert len({d["learning_rate"] for d in drawn}) == 8  # and trials differ
    for d in drawn:
        assert 1e-4 <= d["learning_rate"] <= 1e-1
        assert d["epochs"] in (1, 3) and d["hidden_layers"] in ([4], [8])


def test_grid_trial_n_is_the_nth_combination_and_a_study_rebuilds_from_mlflow_records():
    from mlc.runtime.train import search as rs
    from mlc.runtime.train import search_runs as sr

    grid = ir_search(method="grid")
    drawn = [rs.study_for(grid, n, []).ask(rs.distributions(grid)).params for n in range(4)]
    assert [sr.decode(grid, d) for d in drawn] == [
        {"epochs": 1, "hidden_layers": [4]}, {"epochs": 1, "hidden_layers": [8]},
        {"epochs": 3, "hidden_layers": [4]}, {"epochs": 3, "hidden_layers": [8]}]
    # the pruner compares a trial's epoch with the recorded trials' same epoch
    pruning = ir_search(pruning=True)
    before = [sr.Trial(number=n, state=sr.COMPLETE, value=0.9, drawn=drawn[n],
                       intermediate={1: 0.8, 2: 0.9}, run_id=str(n), status="FINISHED")
              for n in range(2)]
    study = rs.study_for(pruning, 2, before)
    assert len(study.trials) == 2
    trial = study.ask(rs.distributions(pruning))
    trial.report(0.85, 1)
    assert not trial.should_prune()  # the first epoch is the warm-up
    trial.report(0.5, 2)
    assert trial.should_prune()
    # the best trial: the highest complete value, the lower number on a tie
    found = [*before, sr.Trial(3, sr.PRUNED, None, {}, {}, "3", "FINISHED"),
             sr.Trial(4, sr.COMPLETE, 0.95, {}, {}, "4", "FINISHED"),
             sr.Trial(5, sr.COMPLETE, 0.95, {}, {}, "5", "FINISHED")]
    assert sr.best(pruning, found).number == 4
    assert sr.best(ir_search(higher_is_better=False), found).number == 0
