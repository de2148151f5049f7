"""Batch scoring run as its generated container declares it: command, args, env, mounts.

The WorkflowTemplate's `score` container is run as a local process: its mounts mapped to temp
folders (project.json and the Feast repo from the generated ConfigMaps), its env as written,
with the cluster's services replaced by local ones (a real Pushgateway, an MLflow registry
in SQLite) and Argo's expressions by what Argo would substitute.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project

from . import servers
from .cluster_pods import substitute
from .conftest import ROOT, copy_example

pd = pytest.importorskip("pandas", reason="the runtime tests need pandas (mlc[serve])")
pytest.importorskip("mlflow", reason="the runtime tests need MLflow (mlc[serve])")

pytestmark = pytest.mark.slow

ENDPOINT = "fraud-batch"
PIPELINE = "score-fraud-batch"


def _project(tmp: Path, batch: str) -> Path:
    root = copy_example(tmp)
    text = (root / "ml.yaml").read_text()
    (root / "ml.yaml").write_text(text.replace("serving:\n", (
        f"serving:\n  {ENDPOINT}:\n    model: fraud-classifier\n    mode: batch\n"
        f"    batch: {batch}\n"), 1))
    return root


class Pod:
    """The score container of the compiled WorkflowTemplate, runnable on this machine."""

    def __init__(self, root: Path, tmp: Path, tracking: str, pushgateway: str):
        [compiled] = compile_project(root, ["dev"], Diagnostics())
        self.project = compiled.project
        files = compiled.files
        template = yaml.safe_load(files[f"argo/workflowtemplate-{PIPELINE}.yaml"])
        [step] = [t for t in template["spec"]["templates"] if t["name"] == "score"]
        self.deadline = step["activeDeadlineSeconds"]
        self.container = step["container"]
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        self.mounts: dict[str, Path] = {}
        for mount in self.container["volumeMounts"]:
            local = tmp / "pod" / mount["mountPath"].lstrip("/")
            volume = volumes[mount["name"]]
            if "configMap" in volume:  # the ConfigMap's generated content, as mounted
                config_map = next(yaml.safe_load(text) for path, text in files.items()
                                  if path.endswith(".yaml") and b"kind: ConfigMap" in text
                                  and yaml.safe_load(text)["metadata"]["name"]
                                  == volume["configMap"]["name"])
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text(config_map["data"][mount["subPath"]])
            else:
                local.mkdir(parents=True, exist_ok=True)
            self.mounts[mount["mountPath"]] = local
        self.run_dir = self.mounts["/var/lib/mlc/run"]
        # the cluster's services, by the variable that names them
        self.services = {"MLFLOW_TRACKING_URI": tracking, "MLC_PUSHGATEWAY_URL": pushgateway}

    def local_path(self, value: str) -> str:
        for mount_path, local in sorted(self.mounts.items(), key=lambda m: -len(m[0])):
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(local) + value[len(mount_path):]
        if value.startswith("/etc/mlc/feast"):  # the folder of the two mounted files
            return str(self.mounts["/etc/mlc/feast/feature_store.yaml"].parent)
        return value

    def env(self, date: str, workflow: str) -> dict[str, str]:
        out = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        for e in self.container["env"]:
            assert "valueFrom" not in e, f"dev has no secrets to map: {e}"
            value = substitute(e["value"], {"workflow.name": workflow,
                                            "workflow.parameters.date": date})
            if e["name"] in self.services:
                assert ".svc" in value, e  # a cluster address, replaced by the local one
                value = self.services[e["name"]]
            out[e["name"]] = self.local_path(value)
        return out

    def run(self, date: str, workflow: str) -> subprocess.CompletedProcess:
        command = self.container["command"]
        assert command[0] == "python"
        args = [self.local_path(a) for a in self.container["args"]]
        return subprocess.run([sys.executable, *command[1:], *args], env=self.env(date, workflow),
                              cwd=self.mounts["/tmp"], capture_output=True, text=True,
                              timeout=self.deadline)


def _metrics(url: str) -> dict[tuple, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                  if k in ("endpoint", "stage")))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("mlc_batch_scoring")}


@pytest.fixture
def pod(tmp_path):
    import mlflow

    from .test_serve import _register

    root = _project(tmp_path, '{schedule: "0 2 * * *", input: transactions, '
                    'output: "scores/dt={date}/", timezone: Europe/Berlin, timeout: 20m}')
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with servers.pushgateway(tmp_path / "pushgateway") as url:
        pod = Pod(root, tmp_path, tracking, url)
        model = pod.project.models["fraud-classifier"]
        version = _register(tmp_path / "model", tracking, model.registered_name,
                            [r.field for r in model.features], [8])
        mlflow.MlflowClient(tracking).set_registered_model_alias(
            model.registered_name, model.production_alias, version)
        # the data and the Feast registry a cluster's volume would hold; feast apply as the
        # materialisation pipeline runs it
        shutil.copytree(root / "data", pod.run_dir / "data")
        env = pod.env("", "apply")
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from "
                        "mlc.runtime.features import apply_repo; apply_repo(Path(sys.argv[1]))",
                        env["MLC_FEAST_REPO"]], env=env, check=True, capture_output=True)
        yield pod, url, version


def test_the_generated_container_publishes_a_dated_partition(pod):
    pod, url, version = pod
    assert pod.deadline == 20 * 60
    done = pod.run("2026-01-02", "score-fraud-batch-x1")
    assert done.returncode == 0, done.stderr
    partition = pod.run_dir / "scores" / "dt=2026-01-02"
    assert sorted(p.name for p in partition.iterdir()) == ["_SUCCESS", "part-00000.parquet"]
    assert not list((pod.run_dir / "scores").glob("_staging-*"))
    scores = pd.read_parquet(partition / "part-00000.parquet")
    rows = len(pd.read_parquet(pod.run_dir / "data" / "transactions.parquet"))
    assert len(scores) == rows and set(scores["model_version"]) == {version}
    marker = json.loads((partition / "_SUCCESS").read_text())
    assert marker["rows"] == rows and marker["run"] == "score-fraud-batch-x1"
    assert marker["as_of"] == "2026-01-02T00:00:00+01:00"  # Berlin, as the endpoint says
    pushed = _metrics(url)
    assert pushed[("mlc_batch_scoring_rows", (("endpoint", ENDPOINT), ("stage", "scored")))] \
        == rows
    assert pushed[("mlc_batch_scoring_up", (("endpoint", ENDPOINT),))] == 1
    success = pushed[("mlc_batch_scoring_last_success_timestamp_seconds",
                      (("endpoint", ENDPOINT),))]

    # a rerun of the day replaces the partition; a failed run says so and keeps the success
    (partition / "part-00001.parquet").write_bytes(b"left over")
    assert pod.run("2026-01-02", "score-fraud-batch-x2").returncode == 0
    assert sorted(p.name for p in partition.iterdir()) == ["_SUCCESS", "part-00000.parquet"]
    assert json.loads((partition / "_SUCCESS").read_text())["run"] == "score-fraud-batch-x2"
    failed = pod.run("yesterday", "score-fraud-batch-x3")
    assert failed.returncode == 1 and "parameter date" in failed.stderr
    pushed = _metrics(url)
    assert pushed[("mlc_batch_scoring_up", (("endpoint", ENDPOINT),))] == 0
    assert pushed[("mlc_batch_scoring_last_success_timestamp_seconds",
                   (("endpoint", ENDPOINT),))] >= success


def test_the_date_defaults_to_today_in_the_endpoints_time_zone():
    from mlc.runtime.serve import publish

    late = dt.datetime(2026, 1, 1, 23, 30, tzinfo=dt.UTC)
    moment = publish.run_time("Europe/Berlin", now=late)
    assert publish.fill("s3://b/scores/dt={date}/h={hour}/", moment) == \
        "s3://b/scores/dt=2026-01-02/h=00/"
    assert publish.fill("x/{date}.csv", publish.run_time("UTC", "2026-03-04")) == \
        "x/2026-03-04.csv"


def test_csv_file_output_replaces_the_file(tmp_path):
    from mlc.runtime.serve import publish

    frame = pd.DataFrame({"id": [1, 2], "prediction": [0.1, 0.9]})
    for _ in range(2):
        publish.publish("out/scores.csv", frame, fmt="csv", folder=False, data_root=tmp_path,
                        run_id="r", marker={})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scores.csv"]
    assert pd.read_csv(tmp_path / "out" / "scores.csv").equals(frame)


def test_mlc_run_score_writes_the_partition_locally(tmp_path, capsys):
    """`mlc run score ENDPOINT -p date=...`: an s3:// output lands under .mlc/scores/."""
    import mlflow

    from mlc.cli import main
    from mlc.local import run as local

    from .test_serve import _register

    root = _project(tmp_path, '{schedule: "0 2 * * *", input: transactions, '
                    'output: "s3://bucket/scores/dt={date}/", format: csv}')
    prepared = local.prepare(root, "dev", Diagnostics())
    model = prepared.project.models["fraud-classifier"]
    version = _register(tmp_path / "model", prepared.tracking_uri, model.registered_name,
                        [r.field for r in model.features], [8])
    mlflow.MlflowClient(prepared.tracking_uri).set_registered_model_alias(
        model.registered_name, model.production_alias, version)
    env = {**os.environ, **prepared.environ()}
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from "
                    "mlc.runtime.features import apply_repo; apply_repo(Path(sys.argv[1]))",
                    str(prepared.feast_repo)], env=env, check=True, capture_output=True)
    assert main(["run", "-C", str(root), "score", ENDPOINT, "-p", "date=2026-01-02"]) == 0
    partition = root / ".mlc" / "scores" / ENDPOINT / "scores" / "dt=2026-01-02"
    assert sorted(p.name for p in partition.iterdir()) == ["_SUCCESS", "part-00000.csv"]
    scores = pd.read_csv(partition / "part-00000.csv")
    assert len(scores) == len(pd.read_parquet(root / "data" / "transactions.parquet"))
    assert main(["run", "-C", str(root), "score", "fraud-api"]) == 2
    assert "no batch endpoint `fraud-api`" in capsys.readouterr().out


@pytest.mark.parametrize(("output", "warned"), [("scores/dt={date}/", True),
                                                ("s3://bucket/scores/dt={date}/", False)])
def test_a_local_output_is_warned_about(tmp_path, output, warned):
    from mlc.compiler.pipeline import check_environment

    root = _project(tmp_path, f'{{schedule: "0 2 * * *", input: transactions, '
                    f'output: "{output}"}}')
    diags = Diagnostics()
    assert check_environment(root, "dev", diags) is not None
    assert ("MLC244" in [d.code for d in diags.warnings]) == warned


def test_a_scheduled_run_scores_the_day_it_was_scheduled_for(tmp_path):
    """The CronWorkflow passes Argo's `workflow.scheduledTime` (RFC 3339, UTC) as `date`:
    a run scheduled for 01:00 UTC on 2 January scores 2 January in Berlin, even if it
    starts late."""
    from mlc.runtime.serve.publish import fill, run_time

    moment = run_time("Europe/Berlin", "2026-01-02T01:00:00Z")
    assert fill("s3://b/dt={date}/h={hour}/", moment) == "s3://b/dt=2026-01-02/h=02/"
    root = ROOT / "tests" / "golden" / "projects" / "batch-serverless"
    diags = Diagnostics()
    [compiled] = compile_project(root, ["prod"], diags)
    cron = yaml.safe_load(compiled.files["argo/cronworkflow-score-price-batch.yaml"])
    assert cron["spec"]["workflowSpec"]["arguments"]["parameters"] == [
        {"name": "date", "value": "{{workflow.scheduledTime}}"}]
