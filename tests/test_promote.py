"""`mlc promote FROM TO`: only version pins move, the overlay keeps its comments and layout,
and nothing is written when the result would not compile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlc.cli import main

from .bad_inputs import BASE, edit
from .conftest import write_project

SNAPSHOTS = Path(__file__).parent / "snapshots" / "plan"
DIGEST = "sha256:" + "ab" * 32
NEXT_SERVE = "ghcr.io/mlc-dev/mlc-serve:0.2.0"

STAGING = """\
# Staging: the next release runs here first.
platform: {namespace: demo-staging, development: true}
images:
  serve: ghcr.io/mlc-dev/mlc-serve:0.2.0  # the candidate runtime
serving:
  churn-api:
    alias: challenger
"""
PROD = """\
# Production: more replicas, and clients from payments only.
platform:
  namespace: demo-prod   # Argo CD syncs this namespace
  development: true   # a test cluster: local files and SQLite are fine
serving:
  churn-api:
    autoscaling: {minReplicas: 2, maxReplicas: 6}
    allowFrom:
      - namespace: payments   # the checkout service
        podLabels: {"app": "checkout"}
"""
PROJECT = {"ml.yaml": BASE, "environments/staging.yaml": STAGING,
           "environments/prod.yaml": PROD,
           "environments/dev.yaml": "platform: {development: true}\n"}


def promote(project: Path, *args: str) -> int:
    return main(["promote", "-C", str(project), *args])


def check_snapshot(name: str, text: str, update: bool) -> None:
    path = SNAPSHOTS / name
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {name}: run pytest --update-golden"
    assert text == path.read_text()


def test_promote_writes_only_the_pins(tmp_path: Path, capsys, update_golden: bool):
    project = write_project(tmp_path, PROJECT)
    assert promote(project, "staging", "prod") == 0
    out = capsys.readouterr().out
    assert "Promoted staging -> prod: images.serve, serving.churn-api." in out
    text = (project / "environments" / "prod.yaml").read_text()
    check_snapshot("promote-staging-prod.yaml", text, update_golden)
    # Everything that was there is still there, line for line, comments included.
    assert text.startswith(PROD)
    assert text[len(PROD):] == f"    alias: challenger\nimages:\n  serve: {NEXT_SERVE}\n"
    # The promoted environment now resolves to staging's pins; the rest stays its own.
    assert main(["explain", "-C", str(project), "prod", "serving.churn-api.alias"]) == 0
    assert "challenger" in capsys.readouterr().out
    assert main(["explain", "-C", str(project), "prod", "platform.namespace"]) == 0
    assert "demo-prod" in capsys.readouterr().out

    assert promote(project, "staging", "prod") == 0
    assert "Nothing to promote: prod already runs what staging runs." in capsys.readouterr().out
    assert (project / "environments" / "prod.yaml").read_text() == text


def test_dry_run_prints_the_diff_and_writes_nothing(tmp_path: Path, capsys):
    project = write_project(tmp_path, PROJECT)
    assert promote(project, "staging", "prod", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "+++ b/environments/prod.yaml" in out and "+    alias: challenger" in out
    assert "(dry run: environments/prod.yaml not written)" in out
    assert (project / "environments" / "prod.yaml").read_text() == PROD


def test_a_version_pin_replaces_an_alias(tmp_path: Path, capsys, update_golden: bool):
    pinned_alias = edit("    model: churn\n", "    model: churn\n    alias: champion\n")
    project = write_project(tmp_path, {
        **PROJECT, "ml.yaml": pinned_alias,
        "environments/staging.yaml": "platform: {namespace: demo-staging, development: true}\n"
                                     "serving:\n  churn-api:\n    version: 7\n"
                                     "    alias: {$patch: delete}\n"})
    assert promote(project, "staging", "prod") == 0
    text = (project / "environments" / "prod.yaml").read_text()
    check_snapshot("promote-version.yaml", text, update_golden)
    assert text.endswith("    version: 7\n    alias: {$patch: delete}\n")
    assert main(["validate", "-C", str(project), "--env", "prod"]) == 0

    # And back: staging serves an alias again; the overlay's version pin goes.
    (project / "environments" / "staging.yaml").write_text(STAGING)
    capsys.readouterr()
    assert promote(project, "staging", "prod") == 0
    text = (project / "environments" / "prod.yaml").read_text()
    assert "version" not in text and "$patch" not in text
    assert "    alias: challenger\n" in text


def test_promotion_that_would_not_compile_is_refused(tmp_path: Path, capsys):
    strict = ("platform: {namespace: demo-staging, imagePolicy: digest, development: true}\n"
              "images:\n"
              f"  train: ghcr.io/mlc-dev/mlc-train:0.1.0@{DIGEST}\n"
              f"  serve: {NEXT_SERVE}@{DIGEST}\n"
              f"  drift: ghcr.io/mlc-dev/mlc-drift:0.1.0@{DIGEST}\n")
    project = write_project(tmp_path, {**PROJECT, "environments/staging.yaml": strict})
    before = (project / "environments" / "staging.yaml").read_text()
    assert main(["validate", "-C", str(project)]) == 0
    capsys.readouterr()
    assert promote(project, "dev", "staging") == 1  # dev's images are tags, not digests
    err = capsys.readouterr().err
    assert "error[MLC914]: promoting dev into staging would not compile" in err
    assert "MLC304" in err  # the reason, from the compiler itself
    assert (project / "environments" / "staging.yaml").read_text() == before


def test_usage_and_unknown_environments(tmp_path: Path, capsys):
    project = write_project(tmp_path, PROJECT)
    assert promote(project, "staging", "staging") == 2
    assert promote(project, "staging", "prd") == 1
    assert "did you mean `prod`?" in capsys.readouterr().err


@pytest.mark.slow
def test_promoted_prod_passes_the_staging_check(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = write_project(tmp_path / "project", {
        **PROJECT, "environments/staging.yaml":
        "platform: {namespace: demo-staging, development: true}\n"})
    assert main(["apply", "-C", "project", "--out", "out"]) == 0
    # The next release goes to staging first, is applied there, then promoted.
    (project / "environments" / "staging.yaml").write_text(STAGING)
    assert main(["apply", "-C", "project", "--out", "out", "--env", "staging"]) == 0
    assert promote(project, "staging", "prod") == 0
    capsys.readouterr()
    assert main(["plan", "-C", "project", "--out", "out", "--env", "prod", "--format",
                 "json"]) == 0
    [env] = json.loads(capsys.readouterr().out)["environments"]
    assert env["changes"] and env["risks"] == []
