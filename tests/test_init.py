"""`mlc init`: every blueprint, initialised into an empty folder, validates with no finding,
compiles for every environment, and its objects pass the upstream schemas (CRDs from
../shared/schemas, Kubernetes' own kinds by kubernetes-validate), `kubectl kustomize` and,
for its alert rules and their unit tests, the real promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from mlc import __version__
from mlc.cli import main
from mlc.compiler.init import BLUEPRINTS, NOT_AVAILABLE, blueprint_files
from mlc.schema.jsonschema import overlay_schema_text, schema_text

from . import crd_monitoring_check, schema_check
from .conftest import ROOT
from .test_promtool import check_tree, promtool  # noqa: F401 (promtool: a fixture)

EVENTS = "argo-events/schema.json"
K8S_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io",
              "rbac.authorization.k8s.io", "scheduling.k8s.io"}


def cli(*args: str) -> int:
    return main(list(args))


@cache
def crd_files() -> dict[tuple[str, str], str]:
    """(group, kind) -> the CRD file under ../shared/schemas that defines it."""
    found = {}
    root = schema_check.require_schemas()
    for path in sorted(root.rglob("*.yaml")):
        head = path.read_text("utf-8", errors="replace")[:20000]
        if "kind: CustomResourceDefinition" not in head:
            continue
        doc = yaml.load(head.split("\n  versions:")[0], Loader=yaml.SafeLoader) or {}
        spec = doc.get("spec") or {}
        names = spec.get("names") or {}
        if spec.get("group") and names.get("kind"):
            found[(spec["group"], names["kind"])] = path.relative_to(root).as_posix()
    return found


def schema_errors(obj: dict) -> list[str]:
    group, _, version = obj["apiVersion"].rpartition("/")
    kind = obj["kind"]
    if group in K8S_GROUPS:
        kubernetes_validate = pytest.importorskip("kubernetes_validate")
        try:
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [str(exc)]
        return []
    if group == "monitoring.coreos.com":
        return crd_monitoring_check.errors(obj)
    if group == "argoproj.io" and kind in ("EventSource", "Sensor", "EventBus"):
        return schema_check.check_definition(obj, EVENTS, f"io.argoproj.events.{version}.{kind}")
    relpath = crd_files().get((group, kind))
    assert relpath, f"no upstream schema for {obj['apiVersion']} {kind}"
    return schema_check.check_crd(obj, relpath, version)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def initialised(tmp_path_factory) -> dict[str, tuple[Path, dict, str]]:
    """Every blueprint initialised by `mlc init` and compiled by `mlc compile`, once: the
    output folder, validate's JSON result and compile's stderr, by blueprint."""
    import contextlib
    import io

    out = {}
    for blueprint in sorted(BLUEPRINTS):
        base = tmp_path_factory.mktemp(blueprint)
        project = base / "project"
        assert cli("init", blueprint, str(project)) == 0
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert cli("validate", "-C", str(project), "--format", "json") == 0
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            assert cli("compile", "-C", str(project), "--out", str(base / "out")) == 0
        out[blueprint] = (base / "out", json.loads(stdout.getvalue()), stderr.getvalue())
    return out


def environments(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("blueprint", sorted(BLUEPRINTS))
def test_every_blueprint_validates_and_compiles_every_environment(blueprint: str,
                                                                  initialised):
    out, result, compile_err = initialised[blueprint]
    # no warning either, but that of a canary rollout: its endpoint serves a registry alias
    # until `mlc pin` resolves it against a registry (MLC343), which a new project has not got
    allowed = {"MLC343"} if blueprint in ("tabular", "ranking") else set()
    if blueprint == "llm":
        # and the fine-tune's: its trainer writes no checkpoints (MLC322), and vLLM exports no
        # failed-request series, so the default availability objective and error-rate gate
        # go unmeasured (MLC375, MLC377): said as warnings, not hidden
        allowed = {"MLC322", "MLC343", "MLC375", "MLC377"}
    assert result["valid"], result["diagnostics"]
    assert {d["code"] for d in result["diagnostics"]} <= allowed, result["diagnostics"]
    assert allowed or compile_err == ""
    expected = sorted(Path(p).stem for p in blueprint_files(blueprint)
                      if p.startswith("environments/")) or ["default"]
    assert environments(out) == expected
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomize build is not checked")
    for env in environments(out):
        built = subprocess.run([kubectl, "kustomize", str(out / env)], capture_output=True,
                               text=True, timeout=120)
        assert built.returncode == 0, f"{env}: {built.stderr}"


# Slow: the upstream CRDs are megabytes of YAML each (loaded once per process, shared with
# the other schema tests of the suite).
@pytest.mark.slow
def test_every_blueprints_objects_pass_the_upstream_schemas(initialised):
    kinds = set()
    for blueprint, (out, _, _) in sorted(initialised.items()):
        for env in environments(out):
            folder = out / env
            checked = 0
            for path in sorted(folder.rglob("*.yaml")):
                if path.name == "kustomization.yaml" or path.parent.name == "feast":
                    continue  # the Feast repo's feature_store.yaml is Feast's, not Kubernetes'
                for obj in yaml.safe_load_all(path.read_text()):
                    if isinstance(obj, dict) and "apiVersion" in obj:
                        where = f"{blueprint}: {env}/{path.relative_to(folder)}"
                        assert schema_errors(obj) == [], where
                        kinds.add(obj["kind"])
                        checked += 1
            assert checked > 3, (blueprint, env)
    # the check reached the custom resources, not only Kubernetes' own kinds
    assert {"WorkflowTemplate", "Application", "Rollout", "PrometheusRule"} <= kinds, kinds


@pytest.mark.slow
@pytest.mark.parametrize("blueprint", sorted(BLUEPRINTS))
def test_every_blueprints_rules_pass_promtool(blueprint: str, initialised, promtool: str):  # noqa: F811
    """`promtool check rules` on every rule file and `promtool test rules` on every test
    file the blueprint compiles to, in every environment (the minimal one has none)."""
    out, _, _ = initialised[blueprint]
    checked = 0
    for env in environments(out):
        if (out / env / "monitoring" / "rules").is_dir():
            check_tree(promtool, out / env)
            checked += 1
    assert checked == (0 if blueprint == "minimal" else len(environments(out))), blueprint


def test_the_project_around_the_blueprint(workdir: Path):
    assert cli("init", "batch", "project", "--ci", "gitlab") == 0
    project = workdir / "project"
    assert (project / "ml.schema.json").read_text() == schema_text()
    assert (project / "ml.overlay.schema.json").read_text() == overlay_schema_text()
    # the settings the repository's own example ships
    assert json.loads((project / ".vscode" / "settings.json").read_text()) == json.loads(
        (ROOT / ".vscode" / "settings.json").read_text())
    assert (project / "ml.yaml").read_text().startswith(
        "# yaml-language-server: $schema=./ml.schema.json\n")
    gitlab = (project / ".gitlab-ci.yml").read_text()
    assert f'MLC_PIP_SPEC: "mlc=={__version__}"' in gitlab
    assert yaml.safe_load(gitlab)["mlc-plan"]["stage"] == "test"
    assert not (project / ".github").exists()

    assert cli("init", "minimal", "plain", "--ci", "none") == 0
    assert sorted(p.relative_to(workdir / "plain").as_posix()
                  for p in (workdir / "plain").rglob("*") if p.is_file()) == [
        ".vscode/settings.json", "ml.overlay.schema.json", "ml.schema.json", "ml.yaml"]


def test_the_llm_blueprint_is_the_bundled_llm_example():
    """A copy in the package (a wheel holds no repository files), byte for byte but for the
    lines that point the YAML language server at the schemas (the example's are two folders
    up, a new project's beside it)."""
    files = blueprint_files("llm")
    example = ROOT / "examples" / "llm"
    assert sorted(files) == sorted(p.relative_to(example).as_posix()
                                   for p in example.rglob("*") if p.is_file())
    for path, data in files.items():
        ours, theirs = data.split(b"\n"), (example / path).read_bytes().split(b"\n")
        if path.endswith(".yaml"):
            assert ours[0].startswith(b"# yaml-language-server: $schema=") and \
                theirs[0].startswith(b"# yaml-language-server: $schema=../../"), path
            ours, theirs = ours[1:], theirs[1:]
        assert ours == theirs, path


def test_the_tabular_blueprint_is_the_bundled_example_and_ci_is_the_shipped_workflow(
        workdir: Path):
    # copies kept in the package (a wheel holds no repository files): they must not drift
    for path, data in blueprint_files("tabular").items():
        assert (ROOT / path).read_bytes() == data, path
    shipped = ROOT / "mlc" / "blueprints" / "ci"
    assert (shipped / "github-workflow.yml").read_bytes() == (
        ROOT / ".github" / "workflows" / "mlc.yml").read_bytes()
    assert (shipped / "gitlab-ci.yml").read_bytes() == (
        ROOT / "ci" / "gitlab" / "mlc.gitlab-ci.yml").read_bytes()
    assert (shipped / "dependabot.yml").read_bytes() == (
        ROOT / ".github" / "dependabot.yml").read_bytes()
    assert cli("init", "tabular", "project") == 0
    assert (workdir / "project" / ".github" / "dependabot.yml").read_bytes() == (
        shipped / "dependabot.yml").read_bytes()
    workflow = (workdir / "project" / ".github" / "workflows" / "mlc.yml").read_text()
    original = (ROOT / ".github" / "workflows" / "mlc.yml").read_text()
    changed = [(a, b) for a, b in zip(original.splitlines(), workflow.splitlines(),
                                      strict=True) if a != b]
    assert changed == [('  MLC_PIP_SPEC: "."      # what to pip install: "." in mlc\'s own '
                        'repository', f'  MLC_PIP_SPEC: "mlc=={__version__}"  # the mlc '
                        'release this project uses')]


def test_init_refuses_a_folder_in_use_and_unknown_blueprints(workdir: Path, capsys):
    (workdir / "taken").mkdir()
    (workdir / "taken" / "notes.txt").write_text("mine\n")
    (workdir / "afile").write_text("")
    for args, code, text in (
            (("tabular", "taken"), "MLC517", "taken is not empty"),
            (("tabular", "afile"), "MLC517", "afile is not a folder"),
            (("tabluar", "new"), "MLC518", "did you mean `tabular`?"),
            (("recommendation", "new"), "MLC518", "start from `ranking` and adapt it")):
        capsys.readouterr()
        assert cli("init", *args) == 1
        err = capsys.readouterr().err
        assert code in err and text in err, err
    assert sorted(p.name for p in (workdir / "taken").iterdir()) == ["notes.txt"]
    assert not (workdir / "new").exists()

    capsys.readouterr()
    assert cli("init", "--list") == 0
    listed = capsys.readouterr().out
    for name in [*BLUEPRINTS, *NOT_AVAILABLE]:
        assert any(line.startswith(name + " ") for line in listed.splitlines()), name

    (workdir / "empty").mkdir()
    assert cli("init", "-C", "empty") == 0  # the default: minimal, into an empty folder here
    assert (workdir / "empty" / "ml.yaml").read_bytes() == blueprint_files("minimal")["ml.yaml"]


@pytest.mark.slow  # builds a wheel (about 5 s)
def test_the_wheel_holds_every_blueprint(tmp_path: Path):
    """package-data lists the blueprint files by pattern; a pattern that misses one would
    ship a blueprint that fails to initialise."""
    source = tmp_path / "source"  # a copy: building in place would leave build/ behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "mlc", source / "mlc",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip()[-200:]}")
    assert build.returncode == 0, build.stderr
    import zipfile

    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in [*BLUEPRINTS, "ci"]:
        for path in (blueprint_files(name) if name != "ci" else
                     {"github-workflow.yml": b"", "gitlab-ci.yml": b"", "dependabot.yml": b""}):
            assert f"mlc/blueprints/{name}/{path}" in names, path


@pytest.mark.slow  # about 25 s: feast apply, materialise, train, evaluate, register, serve
def test_the_ranking_blueprint_runs_end_to_end(workdir: Path):
    """What the blueprint's first user does: `mlc init ranking`, `python data/generate.py`,
    `mlc run --env dev` (a sqlite MLflow store under .mlc/), then `mlc run serve` and a query's
    candidates posted to the endpoint. The ranker is registered and promoted with NDCG@10 and
    MAP@5 logged and its gates passed, and its scores put the sample data's more relevant
    candidates first."""
    import os
    import socket
    import sqlite3
    import time
    import urllib.request

    import numpy as np
    import pandas as pd
    from mlflow.tracking import MlflowClient

    assert cli("init", "ranking", "search", "--ci", "none") == 0
    project = workdir / "search"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    made = subprocess.run([sys.executable, "data/generate.py"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    judgements = pd.read_parquet(project / "data" / "judgements.parquet")
    assert set(judgements["relevance"]) == {0, 1, 2, 3}
    assert judgements.groupby("query_id").size().between(8, 30).all()

    done = subprocess.run([sys.executable, "-m", "mlc", "run", "-C", str(project), "--env",
                           "dev"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for step in ("feature-apply", "materialize", "validate-data", "train", "evaluate",
                 "register", "promote"):
        assert any(line.split()[:2] == ["ok", step] for line in done.stdout.splitlines()), \
            done.stdout
    assert "registered search-ranker version 1 (@challenger, @champion)" in done.stdout

    (run_dir,) = (project / ".mlc" / "runs" / "train-search-ranker").iterdir()
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["passed"], evaluation
    gates = {g["metric"]: g for g in json.loads((run_dir / "summary" / "evaluate.json")
                                                .read_text())["facts"] if g["kind"] == "gate"}
    assert set(gates) == {"ndcg_at_10", "map_at_5"}
    for metric, bound in (("ndcg_at_10", 0.75), ("map_at_5", 0.60)):
        assert gates[metric]["min"] == bound and evaluation["metrics"][metric] > bound
        assert f"gate {metric} {gates[metric]['value']:.4g} (must be >= {bound:g}): pass" \
            in done.stdout
    spec = json.loads((run_dir / "model" / "spec.json").read_text())
    assert spec["task"] == "ranking" and spec["architecture"]["objective"] == "rank:ndcg"

    tracking = f"sqlite:///{project / '.mlc' / 'mlflow.db'}"
    client = MlflowClient(tracking)
    version = client.get_model_version_by_alias("search-ranker", "champion")
    assert str(version.version) == "1"
    run = client.get_run(version.run_id)
    assert run.data.tags["mlc.gates"] == "passed"
    assert run.data.metrics["test_ndcg_at_10"] == pytest.approx(
        evaluation["metrics"]["ndcg_at_10"])
    assert "test_map_at_5" in run.data.metrics
    # the item stats went to the dev online store; the per-request match scores did not
    # (Feast makes a table for every view, and fills only those that are online)
    with sqlite3.connect(project / "data" / "online_store.db") as db:
        rows = {t: db.execute(f'select count(*) from "{t}"').fetchone()[0] for (t,) in
                db.execute("select name from sqlite_master where type='table'")}
    assert rows.get("search_ranking_dev_item_stats", 0) > 0, rows
    assert rows.get("search_ranking_dev_query_item_match", 0) == 0, rows

    # the endpoint as the search service calls it: one query's candidates, a score each
    dataset = pd.read_parquet(run_dir / "data" / "dataset.parquet")
    test = dataset[dataset["__split__"] == "test"]
    features = spec["features"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(workdir / "server.log", "wb")  # a pipe nobody reads would block the server
    server = subprocess.Popen([sys.executable, "-m", "mlc", "run", "-C", str(project), "--env",
                               "dev", "serve", "search-rerank", "--port", str(port)], env=env,
                              stdout=log, stderr=subprocess.STDOUT)

    def post(body: dict) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict",
                                         data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    right = total = 0
    try:
        deadline = time.time() + 90
        while True:
            assert server.poll() is None, (workdir / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready",
                                            timeout=2) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, (workdir / "server.log").read_text()
            time.sleep(0.3)
        for _, query in sorted(test.groupby("query_id"))[:20]:
            # a missing value (the sample data has some) is sent as null
            answer = post({"instances": [{f: None if pd.isna(row[f]) else float(row[f])
                                          for f in features} for _, row in query.iterrows()]})
            scores = np.asarray(answer["predictions"], dtype=np.float64)
            assert scores.shape == (len(query),)
            grades = query["relevance"].to_numpy()
            better = grades[:, None] > grades[None, :]
            total += int(better.sum())
            right += int((better & (scores[:, None] > scores[None, :])).sum())
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    # of the candidate pairs with different grades, most are put in the grades' order
    assert right / total > 0.75, right / total


def test_the_ranking_blueprints_sample_data_is_what_its_sources_declare(workdir: Path):
    """data/generate.py gives the same rows for the same seed, and each file holds the
    columns its source declares, no more, with values inside the declared bounds."""
    import importlib.util

    assert cli("init", "ranking", "search", "--ci", "none") == 0
    project = workdir / "search"
    spec = importlib.util.spec_from_file_location("generate", project / "data" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    frames = generate.generate()
    again = generate.generate()
    sources = yaml.safe_load((project / "ml.yaml").read_text())["sources"]
    assert set(frames) == set(sources)
    for name, source in sources.items():
        frame = frames[name]
        assert frame.equals(again[name]), name
        assert source["path"] == f"data/{name}.parquet"
        assert [c["name"] for c in source["columns"]] == list(frame.columns), name
        for column in source["columns"]:
            values = frame[column["name"]]
            if column.get("nullable") is False:
                assert values.notna().all(), (name, column["name"])
            if "min" in column:
                assert values.min() >= column["min"], (name, column["name"])
            if "max" in column:
                assert values.max() <= column["max"], (name, column["name"])
            if "allowed" in column:
                assert set(values.unique()) == set(column["allowed"]), (name, column["name"])
            if column["type"] == "int64":
                assert str(values.dtype) == "int64", (name, column["name"])
            if column["type"] == "unix_timestamp":
                assert str(values.dtype) == "datetime64[us, UTC]", (name, column["name"])
