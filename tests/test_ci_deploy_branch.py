"""The CI templates' deploy-branch option (Argo CD's rendered-manifests pattern), run by bash
against a local "origin" as tests/test_plan.py runs the default mode: apply pushes the tree to
`MLC_DEPLOY_BRANCH` (keeping other projects' folders there) instead of committing to main,
plans compare with that branch, and a project whose Applications watch another revision is
refused before anything is pushed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .bad_inputs import BASE, edit
from .test_plan import ci_repository, ci_steps, ci_templates, cli, git

DEPLOYED = edit("platform:\n  imagePolicy: tag\n",
                "platform:\n  imagePolicy: tag\n  argocd: {targetRevision: deploy}\n")
MORE_REPLICAS = edit("    model: churn\n    hardware: cpu-small\n",
                     "    model: churn\n    hardware: cpu-small\n"
                     "    autoscaling: {minReplicas: 2, maxReplicas: 5}\n", DEPLOYED)


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def files(repo: Path, ref: str) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", ref).split()


@pytest.mark.slow
def test_apply_pushes_to_the_deploy_branch_and_plans_read_it(tmp_path: Path):
    origin, work, env = ci_repository(tmp_path, DEPLOYED)
    workflow, gitlab = ci_templates()
    assert workflow["env"]["MLC_DEPLOY_BRANCH"] == gitlab["variables"]["MLC_DEPLOY_BRANCH"] == ""
    env["MLC_DEPLOY_BRANCH"] = "deploy"
    main_before = git(origin, "rev-parse", "main")

    # Merge to main, no deploy branch yet: the GitHub apply job creates it.
    github = {**env, "GITHUB_SHA": main_before.strip(), "GITHUB_REF_NAME": "main",
              "ALLOW_DELETE": "false"}
    for script in ci_steps(workflow["jobs"]["apply"], github):
        result = bash(script, work, github)
        assert result.returncode == 0, result.stderr
    assert git(origin, "rev-parse", "main") == main_before  # nothing committed to main
    deployed = files(origin, "deploy")
    assert "deploy/default/.mlc-history.jsonl" in deployed and len(deployed) > 10
    assert all(p.startswith("deploy/default/") for p in deployed)
    assert "deploy/default/.mlc.lock" not in deployed
    assert git(origin, "log", "-1", "--format=%s", "deploy").startswith("mlc apply: ")
    app = git(origin, "show", "deploy:deploy/default/argocd/application-demo-default.yaml")
    assert yaml.safe_load(app)["spec"]["source"]["targetRevision"] == "deploy"

    # Another project's tree on the same branch stays where it is.
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", "-b", "deploy", str(origin), str(other))
    (other / "payments").mkdir()
    (other / "payments" / "app.yaml").write_text("kind: Other\n")
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "another project's apply")
    git(other, "push", "-q", "origin", "deploy")

    # A pull request, checked out afresh (no tree on disk): the plan reads the deploy
    # branch and shows the one change, on GitHub and on GitLab alike.
    shutil.rmtree(work / "deploy")
    git(work, "fetch", "-q", "origin")
    git(work, "checkout", "-q", "-b", "more-replicas")
    (work / "ml.yaml").write_text(MORE_REPLICAS)
    git(work, "commit", "-q", "-am", "more replicas")
    outputs, summary = tmp_path / "github_output", tmp_path / "summary.md"
    pr = {**env, "BASE_REF": "main", "GITHUB_OUTPUT": str(outputs),
          "GITHUB_STEP_SUMMARY": str(summary)}
    result = bash(ci_steps(workflow["jobs"]["plan"], pr)[0], work, pr)
    assert result.returncode == 0, result.stderr
    assert outputs.read_text() == "exitcode=2\n"
    comment = (work / "plan.md").read_text()
    assert "origin/deploy" in comment and "spec.minReplicas: 1" in comment, comment
    mr = {**env, "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"}
    result = bash("\n".join(gitlab["mlc-plan"]["script"]), work, mr)
    assert result.returncode == 0, result.stderr
    assert (work / "plan.md").read_text() == comment

    # Merged: the GitLab apply job builds on the branch's tree and pushes one commit more.
    git(work, "checkout", "-q", "main")
    git(work, "merge", "-q", "--ff-only", "more-replicas")
    before = git(origin, "rev-parse", "deploy").strip()
    ci = {**env, "CI_SERVER_HOST": "gitlab.example.com", "CI_SERVER_PORT": "443",
          "CI_SERVER_PROTOCOL": "https", "CI_PROJECT_PATH": "group/proj",
          "MLC_GITLAB_TOKEN": "token", "CI_COMMIT_SHORT_SHA": "abc123",
          "CI_COMMIT_SHA": "abc123" * 6, "CI_COMMIT_BRANCH": "main"}
    result = bash("\n".join(gitlab["mlc-apply"]["script"]), work, ci)
    assert result.returncode == 0, result.stderr
    assert git(origin, "rev-parse", "deploy^").strip() == before
    assert git(origin, "log", "-1", "--format=%s", "deploy") == "mlc apply: abc123\n"
    assert "payments/app.yaml" in files(origin, "deploy")
    history = git(origin, "show", "deploy:deploy/default/.mlc-history.jsonl")
    assert len(history.splitlines()) == 2  # the first apply's record was carried over
    git(work, "fetch", "-q", "origin")
    assert cli("plan", "-C", str(work), "--base-ref", "origin/deploy",
               "--detailed-exitcode") == 0
    # run again with nothing new: the branch stays as it is
    result = bash("\n".join(gitlab["mlc-apply"]["script"]), work, ci)
    assert result.returncode == 0, result.stderr
    assert "The deploy branch is up to date." in result.stdout
    assert git(origin, "rev-parse", "deploy^").strip() == before

    # Applications that watch main while the tree goes to the deploy branch: refused.
    (work / "ml.yaml").write_text(BASE)
    git(work, "commit", "-q", "-am", "argocd on main")
    pushed = git(origin, "rev-parse", "deploy")
    failed = None
    for script in ci_steps(workflow["jobs"]["apply"], github):
        failed = bash(script, work, github)
        if failed.returncode:
            break
    assert failed is not None and failed.returncode != 0
    assert "targetRevision is 'main', not the deploy branch 'deploy'" in failed.stderr
    assert git(origin, "rev-parse", "deploy") == pushed
