"""Sources pinned to a data version, read from a real DVC repository.

The repository is made here: `git init` + `dvc init`, a CSV in two revisions (tags v1 and v2),
each pushed to a local DVC remote, the cache then emptied so that every read fetches from the
remote as a pod would. The step runtime reads the source at each rev through `dvc.api`, the
train step's MLflow tags and the lineage events name the commit actually read, and
`mlc plan` reports a rev change as a data change.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlc.cli import main
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment
from mlc.runtime import sources
from mlc.runtime.sources import versions
from mlc.runtime.step import StepFailed, build_context

from .bad_inputs import BASE
from .conftest import write_project
from .test_lineage import check_event, schema_registry

pytest.importorskip("dvc")

DAY = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
V1 = {"user_id": [1, 2], "event_timestamp": [DAY, DAY], "clicks": [3, 5], "label": [0, 1]}
V2 = {k: [*v, {"user_id": 3, "event_timestamp": DAY + dt.timedelta(days=1), "clicks": 7,
               "label": 1}[k]] for k, v in V1.items()}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory) -> Path:
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("dvc")
    repo, remote = root / "data-registry", root / "remote"
    repo.mkdir()
    remote.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "data@example.com")
    git(repo, "config", "user.name", "data")
    r = Repo.init(str(repo))
    with r.config.edit() as config:
        config["core"]["remote"] = "local"
        config["core"]["analytics"] = False
        config["remote"]["local"] = {"url": str(remote)}
    (repo / "events").mkdir()
    for tag, columns in (("v1", V1), ("v2", V2)):
        pq.write_table(pa.table(columns), repo / "events" / "events.parquet")
        r.add(str(repo / "events" / "events.parquet"))
        r.push()
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"events {tag}")
        git(repo, "tag", tag)
    r.close()
    shutil.rmtree(repo / ".dvc" / "cache")  # every read below comes from the remote
    return repo


def project_text(rev: str, repo: Path) -> str:
    old = "    path: data/events.parquet\n"
    assert BASE.count(old) == 1
    return BASE.replace(old, "    path: events/events.parquet\n"
                        f"    version:\n      dvc: {{repo: {repo}, rev: {rev}}}\n")


def context(folder: Path, run_dir: Path):
    project = check_environment(folder, "default", Diagnostics())
    assert project is not None
    return build_context(project, "train-churn", "validate-data", environ={
        "MLC_DATA_ROOT": str(folder), "MLC_RUN_DIR": str(run_dir)})


def test_each_rev_reads_its_own_data_and_names_its_commit(tmp_path, dvc_repo):
    for rev, rows in (("v1", 2), ("v2", 3)):
        folder = write_project(tmp_path / rev, {"ml.yaml": project_text(rev, dvc_repo)})
        ctx = context(folder, tmp_path / rev / "run")
        source = ctx.project.sources["events"]
        assert source.version.kind == "dvc" and source.version.pinned == rev
        table = sources.read(ctx, source)
        assert table.num_rows == rows
        assert table.column("clicks").to_pylist()[-1] == (5 if rev == "v1" else 7)
        found = versions.resolve(ctx, source)
        assert found["resolved"] == git(dvc_repo, "rev-list", "-n", "1", rev)
        assert found["label"] == f"dvc {dvc_repo}@{rev}"
        assert len(found["md5"]) == 32
        assert sources.location(ctx, source) == f"events/events.parquet (dvc {dvc_repo}@{rev})"


def test_the_training_run_is_tagged_with_the_commit_read(tmp_path, dvc_repo):
    from mlc.runtime.train import tracking

    folder = write_project(tmp_path, {"ml.yaml": project_text("v2", dvc_repo)})
    ctx = context(folder, tmp_path / "run")
    tags = tracking.lineage_tags(ctx, ctx.model, None, "builtin")  # set on the MLflow run
    commit = git(dvc_repo, "rev-list", "-n", "1", "v2")
    assert tags["mlc.data_version.events"] == commit
    assert tags["mlc.data_version.events.pinned"] == f"dvc {dvc_repo}@v2"


def test_a_rev_that_does_not_exist_fails_readably(tmp_path, dvc_repo):
    folder = write_project(tmp_path, {"ml.yaml": project_text("v9", dvc_repo)})
    ctx = context(folder, tmp_path / "run")
    with pytest.raises(StepFailed) as failed:
        sources.read(ctx, ctx.project.sources["events"])
    assert "source `events`" in failed.value.message and "v9" in failed.value.message


def test_the_lineage_event_carries_the_version_read(tmp_path, dvc_repo):
    from mlc.compiler import ir
    from mlc.runtime.step import run_step

    folder = write_project(tmp_path, {"ml.yaml": project_text("v1", dvc_repo)})
    ctx = context(folder, tmp_path / "run")
    platform = ctx.project.platform.model_copy(update={"lineage": ir.Lineage(
        transport="file", namespace="mlc.demo", path="events.jsonl")})
    plain = {n: s.model_copy(update={"expectations": []}) for n, s in ctx.project.sources.items()}
    project = ctx.project.model_copy(update={"platform": platform, "sources": plain})
    run_step(build_context(project, "train-churn", "validate-data", environ={
        "MLC_DATA_ROOT": str(folder), "MLC_RUN_DIR": str(tmp_path / "run")}))
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text()
              .splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    registry = schema_registry()
    for event in events:
        check_event(event, registry)
    (dataset,) = events[0]["inputs"]
    assert dataset["facets"]["version"]["datasetVersion"] == \
        git(dvc_repo, "rev-list", "-n", "1", "v1")


def test_plan_shows_a_rev_change_as_a_data_change(tmp_path, dvc_repo, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path / "project", {"ml.yaml": project_text("v1", dvc_repo)})
    assert main(["apply", "-C", "project", "--out", "out"]) == 0
    write_project(tmp_path / "project", {"ml.yaml": project_text("v2", dvc_repo)})
    capsys.readouterr()
    assert main(["plan", "-C", "project", "--out", "out", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    risks = [r for env in plan["environments"] for r in env["risks"]
             if r["code"] == "data-version-change"]
    assert [r["subject"] for r in risks] == ["sources.events"]
    assert risks[0]["message"] == (
        f"data change: source `events` moves from dvc {dvc_repo}@v1 to dvc {dvc_repo}@v2: "
        "the next training run reads other data; models trained on it: churn")
    assert main(["plan", "-C", "project", "--out", "out"]) == 0
    assert "data change: source `events`" in capsys.readouterr().out


def lakefs_project(tmp_path: Path, endpoint: str) -> Path:
    old = "    path: data/events.parquet\n"
    return write_project(tmp_path, {"ml.yaml": BASE.replace(
        old, "    path: events/events.parquet\n    version:\n      lakefs: "
        f"{{endpoint: \"{endpoint}\", repository: analytics, ref: main}}\n")})


def test_lakefs_reads_through_its_s3_gateway(tmp_path, monkeypatch):
    """No lakeFS here: the read goes to the gateway's address for `<repository>/<ref>/<path>`
    and fails readably; the ref stays unresolved, with the reason."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    for name, value in (("AWS_ACCESS_KEY_ID", "key"), ("AWS_SECRET_ACCESS_KEY", "secret"),
                        ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(name, value)
    folder = lakefs_project(tmp_path, f"http://127.0.0.1:{port}")
    ctx = context(folder, tmp_path / "run")
    source = ctx.project.sources["events"]
    assert source.version.label() == "lakefs analytics@main"
    with pytest.raises(StepFailed) as failed:
        sources.read(ctx, source)
    message = failed.value.message
    assert "source `events` (lakefs analytics@main" in message
    assert "bucket 'analytics'" in message and "main/events/events.parquet" in message
    found = versions.resolve(ctx, source)
    assert found["resolved"] == "main" and "lakeFS's API did not resolve" in found["note"]


def test_an_object_version_compiles_to_the_ir(tmp_path):
    old = "    path: data/events.parquet\n"
    folder = write_project(tmp_path, {"ml.yaml": BASE.replace(
        old, "    path: s3://acme/events.parquet\n    version: {objectVersion: 3HL4kq.1}\n")})
    project = check_environment(folder, "default", Diagnostics())
    assert project.sources["events"].version.model_dump(exclude_none=True) == \
        {"kind": "object", "pinned": "3HL4kq.1"}


def test_an_object_version_reads_that_version_of_the_key(tmp_path, monkeypatch):
    """`objectVersion` through the step runtime's own read (boto3 GetObject with the version
    id) against a versioned bucket of an in-process S3 (moto): each pinned id reads its own
    version of one key, though a later one was written since, and is what resolve records."""
    pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    import io

    import boto3

    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="acme")
        s3.put_bucket_versioning(Bucket="acme",
                                 VersioningConfiguration={"Status": "Enabled"})
        ids = {}
        for name, rows in (("v1", V1), ("v2", V2)):
            buffer = io.BytesIO()
            pq.write_table(pa.table(rows), buffer)
            ids[name] = s3.put_object(Bucket="acme", Key="events.parquet",
                                      Body=buffer.getvalue())["VersionId"]
        assert ids["v1"] != ids["v2"]
        old = "    path: data/events.parquet\n"
        for name, rows in (("v1", 2), ("v2", 3)):
            folder = write_project(tmp_path / name, {"ml.yaml": BASE.replace(
                old, "    path: s3://acme/events.parquet\n"
                     f"    version: {{objectVersion: \"{ids[name]}\"}}\n")})
            ctx = context(folder, tmp_path / name / "run")
            source = ctx.project.sources["events"]
            table = sources.read(ctx, source)
            assert table.num_rows == rows
            assert table.column("clicks").to_pylist()[-1] == (5 if name == "v1" else 7)
            assert versions.resolve(ctx, source)["resolved"] == ids[name]
        # a version id the bucket does not hold: a located step failure, not a traceback
        folder = write_project(tmp_path / "gone", {"ml.yaml": BASE.replace(
            old, "    path: s3://acme/events.parquet\n    version: {objectVersion: nosuch}\n")})
        ctx = context(folder, tmp_path / "gone" / "run")
        with pytest.raises(StepFailed, match="events"):
            sources.read(ctx, ctx.project.sources["events"])
