"""The audit trail: `mlc apply` records who applied which commit with which plan, in the same
transaction as the tree; `mlc history` lists and checks the records; `mlc plan --base-ref`
explains a recorded change from its commit."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from mlc.cli import main
from mlc.compiler import swap
from mlc.compiler.audit.record import plan_sha256

from .bad_inputs import BASE
from .conftest import write_project
from .test_plan import MORE_REPLICAS, STAGED
from .test_policy import ML, _accept, _edit

HISTORY, INDEX = ".mlc-history.jsonl", ".mlc-index.json"
ENVS = ("prod", "staging")
ONE = {"ml.yaml": BASE}  # one environment, `default`: enough where no transaction spans two


def cli(*args: str) -> int:
    return main(list(args))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("MLC_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "CIRCLE_USERNAME",
                 "BUILDKITE_BUILD_CREATOR", "GITHUB_SERVER_URL", "GITHUB_RUN_ID", "CI_JOB_URL",
                 "CIRCLE_BUILD_URL", "BUILDKITE_BUILD_URL"):
        monkeypatch.delenv(name, raising=False)
    # git must read no configuration of the machine running the tests
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key, value in (("NAME", "Ada Author"), ("EMAIL", "ada@example.org")):
        monkeypatch.setenv(f"GIT_AUTHOR_{key}", value)
        monkeypatch.setenv(f"GIT_COMMITTER_{key}", value.replace("Ada Author", "Cy Committer"))
    return tmp_path


def repo_with(workdir: Path, files: dict[str, str]) -> Path:
    project = write_project(workdir / "project", files)
    git(project, "init", "-q", "-b", "main")
    commit(project, "the project")
    return project


def commit(project: Path, message: str) -> str:
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message)
    return git(project, "rev-parse", "HEAD")


def apply(project: Path, *args: str) -> int:
    return cli("apply", "-C", str(project), "--out", str(project / "deploy"), *args)


def records(project: Path, env: str) -> list[dict]:
    path = project / "deploy" / env / HISTORY
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def index_sha(project: Path, env: str) -> str:
    return hashlib.sha256((project / "deploy" / env / INDEX).read_bytes()).hexdigest()


def test_apply_records_actor_commit_plan_and_tree(workdir: Path, monkeypatch, capsys):
    project = repo_with(workdir, STAGED)
    head = git(project, "rev-parse", "HEAD")
    monkeypatch.setenv("MLC_ACTOR", "deploy-bot for alice")
    monkeypatch.setenv("GITHUB_ACTOR", "ci-user")  # MLC_ACTOR names whom a bot acts for
    assert apply(project) == 0
    for env in ENVS:
        [rec] = records(project, env)
        assert rec["actor"] == {"name": "deploy-bot for alice", "source": "MLC_ACTOR"}
        assert rec["git"] == {"commit": head, "author": "Ada Author <ada@example.org>",
                              "committer": "Cy Committer <ada@example.org>",
                              "committed_at": git(project, "log", "-1", "--format=%cI"),
                              "subject": "the project", "dirty": False}
        assert (rec["env"], rec["seq"], rec["prev_sha256"], rec["saved_plan"]) == (
            env, 1, None, None)
        assert rec["tree_sha256"] == index_sha(project, env)  # the record names its tree
        assert rec["summary"]["add"] > 0 and rec["accepted_risks"] == []
    # one plan for both environments: the same hash
    assert records(project, "prod")[0]["plan_sha256"] == records(project, "staging")[0][
        "plan_sha256"]

    # an apply that changes nothing records nothing (a CI run per push adds no commit)
    before = (project / "deploy" / "prod" / HISTORY).read_bytes()
    assert apply(project) == 0
    assert (project / "deploy" / "prod" / HISTORY).read_bytes() == before

    # uncommitted project changes: a dirty apply, chained to the first record
    monkeypatch.delenv("MLC_ACTOR")
    (project / "ml.yaml").write_text(MORE_REPLICAS)
    assert apply(project) == 0
    first, second = records(project, "prod")
    assert second["git"]["dirty"] is True and second["seq"] == 2
    assert second["actor"] == {"name": "ci-user", "source": "GitHub Actions"}
    assert second["prev_sha256"] == hashlib.sha256(before.splitlines()[-1]).hexdigest()
    assert second["summary"]["change"] > 0


def test_the_output_folder_does_not_make_an_apply_dirty(workdir: Path):
    project = repo_with(workdir, ONE)
    assert apply(project) == 0
    commit(project, "apply")  # CI commits the tree after applying
    (project / "ml.yaml").write_text(MORE_REPLICAS)
    commit(project, "more replicas")
    assert apply(project) == 0  # the tree in deploy/ is now changed and uncommitted
    assert records(project, "default")[-1]["git"]["dirty"] is False


def test_outside_git_the_record_names_the_login(workdir: Path, monkeypatch):
    project = write_project(workdir / "project", ONE)
    monkeypatch.setenv("USER", "operator")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(workdir))  # no repository above
    assert apply(project) == 0
    [rec] = records(project, "default")
    assert rec["git"] is None and rec["actor"] == {"name": "operator", "source": "login"}


def test_accepted_risks_and_saved_plans_are_recorded(workdir: Path, capsys):
    prod = _accept(_edit("minReplicas: 2", "minReplicas: 1"), "MLC502", "serving.churn-api")
    project = repo_with(workdir, {"ml.yaml": ML, "environments/prod.yaml": prod})
    assert cli("plan", "-C", str(project), "--out", str(project / "deploy"),
               "--save", str(workdir / "reviewed.json")) == 0
    assert cli("apply", "-C", str(project), str(workdir / "reviewed.json")) == 0
    [rec] = records(project, "prod")
    assert rec["saved_plan"] == "reviewed.json"
    saved = json.loads((workdir / "reviewed.json").read_text())
    assert rec["plan_sha256"] == plan_sha256(saved["plan"])  # the very plan reviewed
    [accepted] = rec["accepted_risks"]
    assert accepted["code"] == "MLC502" and accepted["subject"] == "serving.churn-api"
    assert accepted["reason"].startswith("approved in RISK-42 for the launch week "
                                         "(environments/prod.yaml:")

    capsys.readouterr()
    assert cli("history", "-C", str(project), "prod") == 0
    text = capsys.readouterr().out
    assert "prod: 1 apply recorded" in text and "(saved: reviewed.json)" in text
    assert "accepted MLC502 serving.churn-api: approved in RISK-42" in text


def test_compile_keeps_the_history_and_writes_none(workdir: Path):
    project = write_project(workdir / "project", ONE)
    assert cli("compile", "-C", str(project), "--out", str(workdir / "fresh")) == 0
    assert not list((workdir / "fresh").rglob(HISTORY))  # compile output holds no record
    assert apply(project) == 0
    before = (project / "deploy" / "default" / HISTORY).read_bytes()
    (project / "ml.yaml").write_text(MORE_REPLICAS)
    assert cli("compile", "-C", str(project), "--out", str(project / "deploy")) == 0
    assert (project / "deploy" / "default" / HISTORY).read_bytes() == before
    assert json.loads(before)["tree_sha256"] != index_sha(project, "default")


def test_a_failed_swap_keeps_every_tree_with_its_record(workdir: Path, monkeypatch):
    project = write_project(workdir / "project", STAGED)
    assert apply(project) == 0
    old = {env: (index_sha(project, env), records(project, env)) for env in ENVS}
    (project / "ml.yaml").write_text(MORE_REPLICAS)
    real_swap = swap._swap_in

    def fail_on_staging(out_dir, env):
        if env == "staging":  # prod (sorted first) is already swapped in: rolled back
            raise OSError(28, "No space left on device", str(out_dir / env))
        return real_swap(out_dir, env)

    monkeypatch.setattr(swap, "_swap_in", fail_on_staging)
    assert apply(project) == 1
    assert {env: (index_sha(project, env), records(project, env)) for env in ENVS} == old
    monkeypatch.setattr(swap, "_swap_in", real_swap)
    assert apply(project) == 0
    for env in ENVS:
        assert [r["seq"] for r in records(project, env)] == [1, 2]
        assert records(project, env)[-1]["tree_sha256"] == index_sha(project, env)


def test_history_lists_newest_first_and_finds_a_broken_chain(workdir: Path, capsys):
    project = write_project(workdir / "project", ONE)
    assert apply(project) == 0
    (project / "ml.yaml").write_text(MORE_REPLICAS)
    assert apply(project) == 0
    capsys.readouterr()
    assert cli("history", "-C", str(project), "--out", str(project / "deploy"),
               "--format", "json") == 0
    shown = json.loads(capsys.readouterr().out)["environments"]
    assert sorted(shown) == ["default"]
    assert [r["seq"] for r in shown["default"]["records"]] == [2, 1]
    assert shown["default"]["tree_matches_last"] is True
    assert all(r["verified"] for r in shown["default"]["records"])

    path = project / "deploy" / "default" / HISTORY
    first, second = path.read_text().splitlines()
    forged = json.loads(first) | {"actor": {"name": "someone else", "source": "MLC_ACTOR"}}
    path.write_text(json.dumps(forged) + "\n" + second + "\n")
    assert cli("history", "-C", str(project), "default") == 0
    captured = capsys.readouterr()
    assert "MLC515" in captured.err and f"{path}:2:1" in captured.err
    assert "the line before it was edited or removed" in captured.err
    assert "#2" in captured.out and "[UNVERIFIED]" in captured.out

    assert cli("history", "-C", str(project), "prd") == 1
    err = capsys.readouterr().err
    assert "MLC516" in err and "known: default" in err


def test_history_escapes_terminal_control_characters(workdir: Path, monkeypatch, capsys):
    project = write_project(workdir / "project", ONE)
    monkeypatch.setenv("MLC_ACTOR", "mallory\x1b[2J")
    assert apply(project) == 0
    capsys.readouterr()
    assert cli("history", "-C", str(project), "default") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "mallory\\x1b[2J (MLC_ACTOR)" in out


def test_a_history_that_is_a_link_is_refused_before_anything_is_written(workdir: Path, capsys):
    project = write_project(workdir / "project", ONE)
    assert apply(project) == 0
    history = project / "deploy" / "default" / HISTORY
    history.unlink()
    (workdir / "elsewhere").write_text("")
    history.symlink_to(workdir / "elsewhere")
    before = {env: index_sha(project, env) for env in ("default",)}
    (project / "ml.yaml").write_text(MORE_REPLICAS)
    capsys.readouterr()
    assert apply(project) == 1
    err = capsys.readouterr().err
    assert "MLC514" in err and "is not a regular file" in err and "Nothing was applied" in err
    assert {env: index_sha(project, env) for env in ("default",)} == before


def test_plan_at_a_recorded_commit_explains_that_change(workdir: Path, capsys):
    """CI applies each merged commit, then commits the tree. The plan of a recorded commit
    against the tree committed at that commit is the change the apply made, and compiling
    that commit again gives exactly the tree the record names."""
    project = repo_with(workdir, ONE)
    assert apply(project) == 0
    commit(project, "apply 1")
    (project / "ml.yaml").write_text(MORE_REPLICAS)
    changed = commit(project, "more replicas")
    assert apply(project) == 0
    commit(project, "apply 2")
    (project / "ml.yaml").write_text(MORE_REPLICAS.replace("maxReplicas: 5", "maxReplicas: 7"))
    commit(project, "max 7")
    assert apply(project) == 0
    commit(project, "apply 3")

    rec = records(project, "default")[1]
    assert rec["git"]["commit"] == changed and rec["git"]["dirty"] is False
    capsys.readouterr()
    assert cli("history", "-C", str(project), "default") == 0
    assert f"explain: git checkout {changed[:12]} && mlc plan --base-ref {changed[:12]} " \
        "--env default" in capsys.readouterr().out
    git(project, "checkout", "-q", rec["git"]["commit"])
    capsys.readouterr()
    assert cli("plan", "-C", str(project), "--out", str(project / "deploy"), "--env",
               "default", "--base-ref", rec["git"]["commit"], "--format", "json") == 0
    [env] = json.loads(capsys.readouterr().out)["environments"]
    assert env["summary"]["change"] == rec["summary"]["change"] > 0
    paths = {c["path_text"] for a in env["actions"] for c in a["changes"]}
    assert any("minReplicas" in p or "replicas" in p for p in paths), paths
    assert cli("compile", "-C", str(project), "--env", "default",
               "--out", str(workdir / "again")) == 0
    again = hashlib.sha256((workdir / "again" / "default" / INDEX).read_bytes()).hexdigest()
    assert again == rec["tree_sha256"]
