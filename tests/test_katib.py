"""Hyperparameter search as a Katib Experiment (`platform.katib`).

- the Experiment that the pipeline's `search` step creates, validated strictly against
  Katib's own OpenAPI definitions (tests/schemas/katib/, from kubeflow/katib v0.19.0), its
  trial Job against Kubernetes' schema, and the mapping of ml.yaml's search onto it;
- Katib's substitution of a trial's values into the trial template's text, as its controller
  does it (plain text replacement in the template's JSON), for every kind of range;
- the trial container's command as declared, run as a local process after the pipeline's
  first steps (one trial, real small data, a real MLflow store in a SQLite file), read the way
  Katib's StdOut collector reads it: the reported metric is the one the MLflow child run holds;
  then a second trial, and the steps after the Experiment as pods (`train` trains the best
  trial's values, `evaluate` gates, `register` registers the run's model);
- what Katib cannot carry is MLC586 (tests/bad_inputs.py has the rendered cases).
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from mlc import step_contract as sc
from mlc.compiler.backends import core, network
from mlc.compiler.backends.argo import katib
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment

from . import argo_projects as ap
from . import lifecycle_projects as lp
from . import netpol
from .cluster_pods import Cluster, Image, mlc_compile, read_tree, substitute
from .schema_check import check_crd, tighten

SCHEMAS = Path(__file__).parent / "schemas" / "katib"
SPACE = {"learningRate": {"type": "loguniform", "low": 0.001, "high": 0.1},
         "epochs": {"type": "int", "low": 1, "high": 3, "step": 2},
         "dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
         "hiddenLayers": {"type": "choice", "values": [[4], [8, 4]]},
         "mixedPrecision": {"type": "choice", "values": ["off", "bf16"]}}
SEARCH = {"method": "tpe", "metric": "roc_auc", "trials": 4, "parallelism": 2, "seed": 7,
          "space": SPACE}
KATIB = {"platform": {"katib": {"namespace": "katib-system"}}}


@cache
def _definitions() -> dict:
    """Katib's definitions, closed as `kubectl --validate=strict` would close a schema; those
    it takes from Kubernetes (not in the file) are open here and checked apart."""
    document = json.loads((SCHEMAS / "swagger.json").read_text("utf-8"))
    definitions = tighten(document["definitions"])
    text = json.dumps(definitions)
    for ref in set(re.findall(r'"#/definitions/([^"]+)"', text)) - set(definitions):
        definitions[ref] = {}
    return definitions


def check_experiment(obj: dict) -> list[str]:
    schema = {"$ref": "#/definitions/v1beta1.Experiment", "definitions": _definitions()}
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(obj)]


def resolve(folder: Path, search: dict | None = None, extra: dict | None = None):
    model = {"training": {"builtin": {"hiddenLayers": [8], "epochs": 2, "batchSize": 64},
                          "search": {**SEARCH, **(search or {})}}}
    lp.write(folder, model)
    values = ap.merge(ap.merge(lp.values(model), KATIB), extra or {})
    (folder / "ml.yaml").write_text(json.dumps(values), "utf-8")
    diags = Diagnostics()
    resolved = check_environment(folder, lp.ENV, diags)
    assert resolved is not None and not diags.has_errors(), [d.message for d in diags.items]
    return resolved


def _workflow(resolved) -> dict:
    (wt,) = ap.emit(resolved)[f"argo/workflowtemplate-{lp.PIPELINE}.yaml"]
    return wt


def _experiment(resolved) -> dict:
    return katib.experiment_from_template(ap.template(_workflow(resolved), "search"))


def test_the_crd_is_katibs_experiment_and_the_experiment_is_valid(tmp_path):
    crd = yaml.safe_load((SCHEMAS / "experiment.yaml").read_text("utf-8"))
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"], crd["spec"]["scope"]) == (
        "kubeflow.org", "Experiment", "Namespaced")
    assert [v["name"] for v in crd["spec"]["versions"] if v["served"]] == ["v1beta1"]
    assert katib.API_VERSION == "kubeflow.org/v1beta1"
    resolved = resolve(tmp_path)
    wt = _workflow(resolved)
    assert check_crd(wt, "argo-workflows/argoproj.io_workflowtemplates.yaml") == []
    tasks = {t["name"]: t["template"] for t in ap.template(wt, "pipeline")["dag"]["tasks"]}
    assert tasks["search"] == "search" and "search-trials" not in {
        t["name"] for t in wt["spec"]["templates"]}
    step = ap.template(wt, "search")["resource"]
    assert (step["action"], step["setOwnerReference"]) == ("create", True)
    assert step["successCondition"] == "status.completionTime"
    assert step["failureCondition"] == "status.trialsFailed > 3"
    exp = _experiment(resolved)
    assert check_experiment(exp) == []
    # what Katib's admission webhook checks beyond the schema
    assert len(exp["metadata"]["generateName"]) + 5 <= 40  # Katib's limit on its names
    assert re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?", exp["metadata"]["generateName"])
    spec = exp["spec"]
    assert spec["maxFailedTrialCount"] <= spec["maxTrialCount"]
    assert spec["parallelTrialCount"] <= spec["maxTrialCount"]
    for f in spec["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"]:
        assert re.compile(f).groups >= 2 and re.match(r".*\(.*\).*\(.*\).*", f)
    # the strict check can fail: a misspelt field is refused
    bad = copy.deepcopy(exp)
    bad["spec"]["parallelTrialCounts"] = 2
    assert check_experiment(bad)
    bad = copy.deepcopy(exp)
    bad["spec"]["parameters"][0]["feasibleSpace"]["minimum"] = "1"
    assert check_experiment(bad)


def test_the_search_maps_onto_katibs_fields(tmp_path):
    spec = _experiment(resolve(tmp_path))["spec"]
    assert spec["objective"] == {"type": "maximize", "objectiveMetricName": "roc_auc",
                                 "metricStrategies": [{"name": "roc_auc", "value": "latest"}]}
    assert spec["algorithm"] == {"algorithmName": "tpe", "algorithmSettings": [
        {"name": "random_state", "value": "7"}]}
    assert (spec["parallelTrialCount"], spec["maxTrialCount"], spec["maxFailedTrialCount"]) == (
        2, 4, 3)
    assert "earlyStopping" not in spec
    params = {p["name"]: (p["parameterType"], p["feasibleSpace"]) for p in spec["parameters"]}
    assert params == {
        "mixed_precision": ("categorical", {"list": ["off", "bf16"]}),
        "dropout": ("double", {"min": "0.0", "max": "0.3", "distribution": "uniform"}),
        "epochs": ("int", {"min": "1", "max": "3", "step": "2"}),
        "hidden_layers": ("categorical", {"list": ["[4]", "[8,4]"]}),
        "learning_rate": ("double", {"min": "0.001", "max": "0.1",
                                     "distribution": "logUniform"})}
    collector = spec["metricsCollectorSpec"]
    assert collector["collector"] == {"kind": "StdOut"}
    assert collector["source"]["filter"]["metricsFormat"] == [sc.KATIB_METRICS_FORMAT]
    template = spec["trialTemplate"]
    assert template["primaryContainerName"] == katib.CONTAINER
    assert {p["name"]: p["reference"] for p in template["trialParameters"]} == {
        "trialName": "${trialSpec.Name}", **{n: n for n in params}}
    grid = _experiment(resolve(tmp_path / "grid", {
        "method": "grid", "trials": None, "pruning": True,
        "space": {"epochs": {"type": "int", "low": 1, "high": 3},
                  "hiddenLayers": {"type": "choice", "values": [[4], [8]]}}}))["spec"]
    assert grid["algorithm"]["algorithmName"] == "grid" and grid["maxTrialCount"] == 6
    assert grid["earlyStopping"] == {"algorithmName": "medianstop", "algorithmSettings": [
        {"name": "min_trials_required", "value": "2"}, {"name": "start_step", "value": "2"}]}
    rmse = resolve(tmp_path / "random", {"method": "random"})
    assert _experiment(rmse)["spec"]["algorithm"]["algorithmName"] == "random"


def _substitute(template: dict, values: dict[str, str], trial: str) -> dict:
    """Katib's controller: the trial spec as JSON text, each `${trialParameters.<name>}`
    replaced by its value's text, parsed again."""
    text = json.dumps(template["trialSpec"])
    for p in template["trialParameters"]:
        value = trial if p["reference"] == "${trialSpec.Name}" else values[p["reference"]]
        text = text.replace(katib.placeholder(p["name"]), value)
    return json.loads(text)


def test_the_trial_job_is_the_steps_pod_with_katibs_values(tmp_path):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    resolved = resolve(tmp_path, extra={
        "hardware": {"default": {"queue": "ml-training"}},
        "secrets": {"mlflow-token": {"kubernetes": {"name": "mlflow", "key": "token"}}},
        "platform": {"mlflow": {"credentialsSecret": "mlflow-token"}}})
    template = _experiment(resolved)["spec"]["trialTemplate"]
    values = {"mixed_precision": "bf16", "dropout": "0.125", "epochs": "3",
              "hidden_layers": "[8,4]", "learning_rate": "0.0031"}
    job = _substitute(template, values, "train-tiny-abc12-k8x2lq9f")
    kubernetes_validate.validate(job | {"metadata": {"name": "t", **job["metadata"]}},
                                 kubernetes_validate.latest_version(), strict=True)
    assert job["metadata"]["labels"] == {"kueue.x-k8s.io/queue-name": "ml-training"}
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[sc.KATIB_TRIAL_ENV] == "train-tiny-abc12-k8x2lq9f"
    assert {k: v for k, v in env.items() if k.startswith(sc.SEARCH_VALUE_PREFIX)} == {
        sc.search_value_env(n): v for n, v in values.items()}
    assert sc.SEARCH_TRIAL_ENV not in env and env[sc.STEP_ENV] == "search"
    # secrets by reference, as in every step
    token = {e["name"]: e for e in container["env"]}["MLFLOW_TRACKING_TOKEN"]
    assert token == {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "mlflow", "key": "token"}}}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    run = {v["name"]: v for v in pod["volumes"]}["run"]
    assert run["persistentVolumeClaim"]["claimName"] == "{{workflow.name}}-run"
    assert job["spec"]["template"]["metadata"]["labels"][katib.TRIAL_LABEL] == lp.MODEL
    # the runtime reads back what Katib wrote, as Optuna would have drawn it
    from mlc.runtime.train import search as rs

    search = resolved.models[lp.MODEL].training.search
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            if k.startswith(sc.SEARCH_VALUE_PREFIX):
                mp.setenv(k, v)
        assert rs.katib_values(search) == {
            "mixed_precision": '"bf16"', "dropout": 0.125, "epochs": 3,
            "hidden_layers": "[8, 4]", "learning_rate": 0.0031}
        mp.setenv(sc.search_value_env("epochs"), "2.5")
        with pytest.raises(Exception, match="no value of the `epochs` range"):
            rs.katib_values(search)


def test_trials_may_reach_stores_and_katib_and_the_workflow_may_create_experiments(tmp_path):
    resolved = resolve(tmp_path)
    files = ap.emit(resolved)
    rules = {o["metadata"]["name"]: o["rules"] for o in ap.objects(files, "Role")}
    assert {"apiGroups": ["kubeflow.org"], "resources": ["experiments"],
            "verbs": ["create", "get", "list", "watch"]} in rules["tiny-workflow"]
    policies = {p.content["metadata"]["name"]: p.content for p in network.emit(resolved)}
    trials = policies["katib-trials"]["spec"]
    assert trials["podSelector"] == {"matchExpressions": [
        {"key": katib.TRIAL_LABEL, "operator": "Exists"}]}
    assert trials["ingress"] == []
    every = list(policies.values())
    pod = netpol.Pod("train-tiny-x-k8x2-abcde", "mlc-tiny", {katib.TRIAL_LABEL: lp.MODEL})
    db = netpol.Pod("katib-db-manager-0", "katib-system", {"katib.kubeflow.org/component":
                                                            "db-manager"})
    mlflow = netpol.Pod("mlflow-0", "mlc-tiny", {})
    assert netpol.egress_allowed(every, pod, db, 6789)
    assert not netpol.egress_allowed(every, pod, db, 3306)  # Katib's database itself
    assert netpol.egress_allowed(every, pod, mlflow, 5000)  # lp's tracking server
    assert not netpol.allowed(every, netpol.Pod("x", "mlc-tiny", {}), pod, 8080)
    (namespace,) = [f.content for f in core.emit(resolved) if f.content["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"][
        "katib.kubeflow.org/metrics-collector-injection"] == "enabled"
    # without `platform.katib` the search stays Argo tasks, and nothing of Katib is written
    argo = ap.resolve(tmp_path / "argo", ap.project({"models": {"churn": {"training": {
        "search": {"metric": "roc_auc", "space": {"epochs": {"type": "int", "low": 1,
                                                              "high": 2}}}}}}}))
    assert argo.models["churn"].training.search.engine == "argo"
    assert "katib-trials" not in {p.content["metadata"]["name"] for p in network.emit(argo)}


def _collect(log: str, metrics: list[str], filters: list[str]) -> list[tuple[str, str, str]]:
    """Katib's StdOut collector over a log: lines naming a metric, the first word as the time
    when it is one, each filter's matches as (name, value) kept for the objective's metrics."""
    out = []
    for line in log.splitlines():
        if not any(m in line for m in metrics):
            continue
        stamp = line.split(" ", 1)[0]
        for f in filters:
            for match in re.finditer(f, line):
                if match.group(1).strip() in metrics:
                    out.append((stamp, match.group(1).strip(), match.group(2).strip()))
    return out


@pytest.mark.slow
def test_a_katib_trial_runs_as_declared_and_reports_what_mlflow_records(tmp_path):
    """Slow (two to three minutes on two busy cores: each pod is a new process importing
    Feast, MLflow and torch): the pipeline's steps up to `search-start` as pods, then one
    Katib trial's pod, its command, env and mounts as the Experiment declares them, with
    values Katib could have drawn, that pod once more as a retried attempt, a second trial,
    and the pipeline's steps after the Experiment."""
    from mlflow.tracking import MlflowClient

    from mlc.runtime.train import search as rs
    from mlc.runtime.train import search_runs as sr

    # a real MLflow store in one file (this MLflow refuses its ./mlruns folder store)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = {"training": {"builtin": {"hiddenLayers": [8], "epochs": 2, "batchSize": 64},
                          "search": {**SEARCH, "trials": 2}}}
    folder = lp.write(tmp_path / "project", model)
    values = ap.merge(lp.values(model), {**KATIB, "platform": {
        **KATIB["platform"], "mlflow": {"trackingUri": tracking}}})
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
    ran = cluster.submit(lp.PIPELINE, workflow, {}, until="search-start")
    assert [t.name for t in ran] == ["validate-data", "materialize", "search-start"]
    wt = cluster.templates[lp.PIPELINE]["spec"]
    resource = {t["name"]: t for t in wt["templates"]}["search"]["resource"]
    # Argo substitutes the manifest's text (the run's name, its parameters) before creating it
    context = {"workflow.name": workflow, "workflow.namespace": "mlc-tiny",
               **{f"workflow.parameters.{p['name']}": p.get("value", "")
                  for p in wt.get("arguments", {}).get("parameters", [])}}
    exp = yaml.safe_load(substitute(resource["manifest"], context))
    assert check_experiment(exp) == []
    spec = exp["spec"]
    trial = exp["metadata"]["generateName"] + "q7w2x-5k8m2n4p"
    drawn = {"mixed_precision": "off", "dropout": "0.1", "epochs": "3", "hidden_layers": "[4]",
             "learning_rate": "0.01"}
    job = _substitute(spec["trialTemplate"], drawn, trial)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == spec["trialTemplate"]["primaryContainerName"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    done = cluster.run_pod(container, volumes, trial, context={}, name="trial")
    assert done.returncode == 0, done.log[-4000:]
    objective = spec["objective"]["objectiveMetricName"]
    reported = _collect(done.log, [objective, *spec["objective"].get(
        "additionalMetricNames", [])], spec["metricsCollectorSpec"]["source"]["filter"][
        "metricsFormat"])
    assert [name for _, name, _ in reported] == [objective] * 3  # one per epoch
    for stamp, _, _ in reported:  # RFC 3339 with nanoseconds: Katib orders them by it
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", stamp), stamp
    latest = float(reported[-1][2])  # the objective's `latest` strategy
    parent = json.loads((run_dir / sc.MLFLOW_RUN_FILE).read_text())["run_id"]
    client = MlflowClient(tracking, registry_uri=tracking)  # not another test's registry
    experiment = client.get_run(parent).info.experiment_id
    (record,) = sr.trials(client, experiment, parent)
    assert record.number == rs.katib_number(trial) and record.state == sr.COMPLETE
    assert record.value == latest
    assert record.drawn == {"mixed_precision": '"off"', "dropout": 0.1, "epochs": 3,
                            "hidden_layers": "[4]", "learning_rate": 0.01}
    child = client.get_run(record.run_id)
    assert child.data.tags[sr.TAG_KATIB_TRIAL] == trial
    assert child.data.params["epochs"] == "3" and child.data.params["mixed_precision"] == "off"
    history = client.get_metric_history(record.run_id, f"val_{objective}")
    assert [m.value for m in history] == [float(v) for _, _, v in reported]
    # the train step after the Experiment takes this trial as the best one
    assert sr.best(resolved_search(folder), sr.trials(client, experiment, parent)) == record
    # a retried pod of the finished trial (the Job's backoff) trains nothing again, and
    # reports the recorded values, since Katib's collector reads the new attempt's log only
    again = cluster.run_pod(container, volumes, trial + "-retry", context={}, name="trial")
    assert again.returncode == 0, again.log[-4000:]
    assert [v for _, _, v in _collect(again.log, [objective], spec["metricsCollectorSpec"][
        "source"]["filter"]["metricsFormat"])] == [v for _, _, v in reported]
    assert sr.trials(client, experiment, parent) == [record]

    # a second trial with other values; then the steps after the Experiment, as pods: `train`
    # trains the best trial's values, `evaluate` gates the model, `register` registers it
    other = exp["metadata"]["generateName"] + "q7w2x-9d3f6h1j"
    job = _substitute(spec["trialTemplate"], {
        "mixed_precision": "off", "dropout": "0.0", "epochs": "1", "hidden_layers": "[8,4]",
        "learning_rate": "0.002"}, other)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    done = cluster.run_pod(container, volumes, other, context={}, name="trial")
    assert done.returncode == 0, done.log[-4000:]
    found = sr.trials(client, experiment, parent)
    assert len(found) == 2
    top = sr.best(resolved_search(folder), found)
    rest = cluster.submit(lp.PIPELINE, workflow, {}, after="search")
    assert [t.name for t in rest][:3] == ["train", "evaluate", "register"]
    run = client.get_run(parent)
    assert run.data.tags[sr.TAG_BEST_TRIAL] == str(top.number)
    decoded = sr.decode(resolved_search(folder), top.drawn)
    assert run.data.params["epochs"] == str(decoded["epochs"])
    assert run.data.params["hidden_layers"] == str(decoded["hidden_layers"])
    assert run.data.params["learning_rate"] == str(decoded["learning_rate"])
    # the register step's record names the version; MLflow holds it, made from the parent run
    registered = json.loads((run_dir / sc.REGISTER_FILE).read_text())
    assert registered["name"] == resolved_search_model(folder).registered_name
    assert registered["mlflow_run_id"] == parent
    version = client.get_model_version(registered["name"], str(registered["version"]))
    evaluation = json.loads((run_dir / sc.EVALUATION_FILE).read_text())
    assert evaluation["passed"] and evaluation["mlflow_run_id"] == parent
    assert version.source and version.status == "READY", version
    assert client.get_registered_model(registered["name"]).aliases == {
        registered["alias"]: registered["version"]}


def resolved_search_model(folder: Path):
    diags = Diagnostics()
    resolved = check_environment(folder, lp.ENV, diags)
    assert resolved is not None
    return resolved.models[lp.MODEL]


def resolved_search(folder: Path):
    diags = Diagnostics()
    resolved = check_environment(folder, lp.ENV, diags)
    assert resolved is not None
    return resolved.models[lp.MODEL].training.search


def _errors(folder: Path, model: dict, extra: dict) -> list[tuple[str, tuple]]:
    lp.write(folder, model)
    (folder / "ml.yaml").write_text(json.dumps(ap.merge(lp.values(model), extra)), "utf-8")
    diags = Diagnostics()
    check_environment(folder, lp.ENV, diags)
    return [(d.code, d.path) for d in diags.errors]


def test_text_that_katib_would_rewrite_is_a_located_error(tmp_path):
    model = {"training": {"builtin": {"hiddenLayers": [8], "epochs": 2, "batchSize": 64,
                                      "env": {"HINT": "${trialParameters.epochs}"}},
                          "search": SEARCH}}
    assert _errors(tmp_path / "env", model, KATIB) == [
        ("MLC586", ("models", lp.MODEL, "training", "builtin", "env", "HINT"))]
    # the same search runs as Argo tasks, where nothing rewrites it
    assert _errors(tmp_path / "argo", model, {}) == []
    plain = {"training": {"builtin": {"hiddenLayers": [8]}, "search": SEARCH}}
    uri = {"platform": {**KATIB["platform"], "mlflow": {
        "trackingUri": "http://mlflow.svc/${trialParameters.x}"}}}
    assert ("MLC586", ("platform", "mlflow", "trackingUri")) in _errors(
        tmp_path / "uri", plain, uri)
