"""`mlc plan` over real compiled output: objects and fields, risks, formats, exit codes.

Each kind of change is a small project before and after one edit; its plan in every format
is a snapshot file (tests/snapshots/plan/<case>.<format>), updated with --update-golden.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from mlc.cli import main
from mlc.compiler.plan.diff import Named, diff_values, format_path
from mlc.compiler.plan.formats import MARKER, render_markdown, render_text
from mlc.compiler.plan.model import Action, EnvPlan, Plan, Risk
from mlc.compiler.plan.objects import Key, split_file
from mlc.compiler.plan.risks import action_risks

from .bad_inputs import BASE, edit
from .conftest import ROOT, write_project

SNAPSHOTS = Path(__file__).parent / "snapshots" / "plan"
FORMATS = {"text": "txt", "markdown": "md", "json": "json"}

GPU = edit("hardware:\n", "hardware:\n  gpu-small:\n    cpu: \"2\"\n    memory: 8Gi\n"
           "    gpu: {type: NVIDIA-L4, count: 1}\n")
GPU_TRAINING = edit("    training:\n      hardware: cpu-small\n",
                    "    training:\n      hardware: gpu-small\n", GPU)
# A second feature view the served model reads, on a column of its own.
SESSIONS_VIEW = ("  user_sessions:\n    entities: [user]\n    source: events\n"
                 "    fields:\n      - {name: sessions, type: int64}\n")
TWO_VIEWS = edit("    inputs: {features: [user_stats]}\n",
                 "    inputs: {features: [user_stats, user_sessions]}\n",
                 edit("      - {name: label, type: int64}\n",
                      "      - {name: label, type: int64}\n"
                      "      - {name: sessions, type: int64}\n",
                      edit("models:\n", SESSIONS_VIEW + "models:\n")))
ONE_VIEW_LEFT = edit("    inputs: {features: [user_stats, user_sessions]}\n",
                     "    inputs: {features: [user_stats]}\n", edit(SESSIONS_VIEW, "", TWO_VIEWS))
SECOND_MODEL = edit(
    "serving:\n", "  churn-v2:\n    task: classification\n    inputs: {features: [user_stats]}\n"
    "    label: {source: events, column: label}\n    training:\n      hardware: cpu-small\n"
    "serving:\n  churn-v2-api:\n    model: churn-v2\n    hardware: cpu-small\n")
MORE_REPLICAS = edit("    model: churn\n    hardware: cpu-small\n",
                     "    model: churn\n    hardware: cpu-small\n"
                     "    autoscaling: {minReplicas: 2, maxReplicas: 5}\n")

STAGED = {
    "ml.yaml": BASE,
    "environments/staging.yaml": "platform: {namespace: demo-staging, development: true}\n",
    "environments/prod.yaml": "# Production: more replicas.\n"
                              "platform: {namespace: demo-prod, development: true}\n"
                              "serving:\n  churn-api:\n    autoscaling: {minReplicas: 2}\n",
}
NEW_SERVE = "ghcr.io/mlc-dev/mlc-serve:0.2.0"


def cli(*args: str) -> int:
    return main(list(args))


def plan_output(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli("plan", "-C", "project", "--out", "out", *args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # relative paths keep tmp_path out of the snapshots
    return tmp_path


def applied(workdir: Path, files: dict[str, str], *args: str) -> Path:
    project = write_project(workdir / "project", files)
    assert cli("apply", "-C", "project", "--out", "out", *args) == 0
    return project


def change(project: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (project / name).write_text(text)


def hand_edit(workdir: Path) -> None:
    path = workdir / "out" / "default" / "serving" / "service-churn-api.yaml"
    text = path.read_text()
    assert "      port: 8080\n" in text
    path.write_text(text.replace("      port: 8080\n", "      port: 8081\n"))


# name -> (project before, edit to make, environment, risk codes expected)
CASES = {
    "add-model": ({"ml.yaml": BASE}, {"ml.yaml": SECOND_MODEL}, []),
    "change-replicas": ({"ml.yaml": BASE}, {"ml.yaml": MORE_REPLICAS}, []),
    "change-gpu": ({"ml.yaml": GPU_TRAINING},
                   {"ml.yaml": GPU_TRAINING.replace("count: 1", "count: 2")}, ["gpu-change"]),
    "delete-feature-view-in-use": ({"ml.yaml": TWO_VIEWS}, {"ml.yaml": ONE_VIEW_LEFT},
                                   ["delete-feature-view-in-use", "input-schema-change"]),
    "hand-edit": ({"ml.yaml": BASE}, hand_edit, ["hand-edited"]),
    "prod-not-in-staging": (STAGED, {"environments/prod.yaml": STAGED["environments/prod.yaml"]
                                     + f"images:\n  serve: {NEW_SERVE}\n"},
                            ["prod-not-in-staging"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_kind_of_change(case: str, workdir: Path, capsys, update_golden: bool):
    before, after, codes = CASES[case]
    project = applied(workdir, before)
    if callable(after):
        after(workdir)
    else:
        change(project, after)
    env = ["--env", "prod"] if "environments/prod.yaml" in before else []
    for fmt, suffix in FORMATS.items():
        code, out = plan_output(capsys, "--format", fmt, "--detailed-exitcode", *env)
        assert code == 2, out
        check_snapshot(SNAPSHOTS / f"{case}.{suffix}", out, update_golden)
        if fmt == "json":
            plan = json.loads(out)
            validate_against_documented_schema(plan)
            [e] = plan["environments"]
            assert sorted({r["code"] for r in e["risks"]}) == codes
            assert plan["changes"] is True


def check_snapshot(path: Path, text: str, update: bool) -> None:
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {path.name}: run pytest --update-golden"
    assert text == path.read_text(), f"{path.name} differs; review, then --update-golden"


def test_change_cases_say_what_changed(workdir: Path, capsys):
    """The facts behind the snapshots, so that an --update-golden cannot hide a regression."""
    project = applied(workdir, {"ml.yaml": BASE})
    change(project, {"ml.yaml": MORE_REPLICAS})
    code, out = plan_output(capsys, "--format", "json", "--detailed-exitcode")
    assert code == 2
    [env] = json.loads(out)["environments"]
    hpa = next(a for a in env["actions"] if a["kind"] == "HorizontalPodAutoscaler")
    assert hpa["action"] == "change"
    assert {(c["path_text"], c["old"], c["new"]) for c in hpa["changes"]} == {
        ("spec.minReplicas", 1, 2), ("spec.maxReplicas", 3, 5)}
    assert env["summary"]["add"] == env["summary"]["delete"] == 0
    assert env["risks"] == []

    change(project, {"ml.yaml": SECOND_MODEL})
    code, out = plan_output(capsys, "--format", "json")
    assert code == 0  # without --detailed-exitcode, changes are not an error
    [env] = json.loads(out)["environments"]
    added = {(a["kind"], a["name"]) for a in env["actions"] if a["action"] == "add"}
    assert ("Deployment", "churn-v2-api") in added
    assert ("WorkflowTemplate", "train-churn-v2") in added


@pytest.mark.slow
def test_feature_view_deletion_is_caught_and_refused(workdir: Path, capsys):
    project = applied(workdir, {"ml.yaml": TWO_VIEWS})
    change(project, {"ml.yaml": ONE_VIEW_LEFT})
    code, out = plan_output(capsys)
    assert code == 0
    assert "[delete-feature-view-in-use] deletes feature view `user_sessions`, which " \
           "endpoint(s) `churn-api` still read" in out
    assert "apply refuses without --allow-delete" in out
    assert "[input-schema-change] endpoint `churn-api` changes its input schema (removes " \
           "user_sessions:sessions)" in out
    before = tree(workdir / "out")
    assert cli("apply", "-C", "project", "--out", "out") == 1
    assert "error[MLC913]" in capsys.readouterr().err
    assert tree(workdir / "out") == before
    assert cli("apply", "-C", "project", "--out", "out", "--allow-delete") == 0
    assert plan_output(capsys, "--detailed-exitcode")[0] == 0


@pytest.mark.slow
def test_namespace_change_deletes_state(workdir: Path, capsys):
    project = applied(workdir, {"ml.yaml": BASE})
    change(project, {"ml.yaml": BASE.replace("platform:\n", "platform:\n  namespace: demo2\n")})
    code, out = plan_output(capsys, "--format", "json", "--detailed-exitcode")
    assert code == 2
    [env] = json.loads(out)["environments"]
    [risk] = [r for r in env["risks"] if r["code"] == "delete-stateful"]
    assert risk == {"code": "delete-stateful", "severity": "high", "blocks_apply": True,
                    "override": "--allow-delete", "accepted": None,
                    "subject": "v1/Namespace//demo-default",
                    "message": "deletes v1 Namespace demo-default, which holds state (data, or "
                               "everything inside it)"}


@pytest.mark.slow
def test_selector_change_replaces_pods(workdir: Path, capsys):
    fixed = BASE.replace("platform:\n", "platform:\n  namespace: demo\n")
    project = applied(workdir, {"ml.yaml": fixed})
    change(project, {"ml.yaml": fixed.replace("  name: demo\n", "  name: demo-renamed\n")})
    code, out = plan_output(capsys, "--format", "json")
    [env] = json.loads(out)["environments"]
    pods = [r for r in env["risks"] if r["code"] == "replace-pods"]
    assert [r["subject"] for r in pods] == ["apps/v1/Deployment/demo/churn-api"]
    assert "selector is immutable" in pods[0]["message"] and pods[0]["severity"] == "high"


def test_pod_replacement_without_surge():
    def action(kind: str, spec: dict) -> Action:
        key = Key("object", "apps/v1", kind, "ns", "web")
        old = {"spec": {**spec, "template": {"spec": {"image": "a"}}}}
        new = {"spec": {**spec, "template": {"spec": {"image": "b"}}}}
        return Action("change", key, "w.yaml", changes=tuple(diff_values(old, new)), old=old,
                      new=new)

    def reasons(a: Action) -> list[str]:
        return [r.message.split(": ", 1)[1] for r in action_risks([a])]

    without_surge = "the pod template changes with maxSurge 0: pods are replaced without surge"
    assert reasons(action("Deployment", {})) == []
    assert reasons(action("Deployment", {"strategy": {"rollingUpdate": {"maxSurge": "25%"}}})) \
        == []
    assert reasons(action("Deployment", {"strategy": {"rollingUpdate": {"maxSurge": 0}}})) == [
        without_surge]
    assert reasons(action("Deployment", {"strategy": {"type": "Recreate"}})) == [
        "the pod template changes and the strategy is Recreate: every pod stops before the new "
        "ones start (downtime)"]
    assert reasons(action("StatefulSet", {})) == [
        "the pod template changes: pods are replaced one at a time, without surge"]
    assert reasons(action("DaemonSet", {})) == [
        "the pod template changes: each node's pod stops before its replacement starts"]
    assert reasons(action("DaemonSet", {"updateStrategy": {"rollingUpdate": {"maxSurge": 1}}})) \
        == []
    assert reasons(action("Rollout", {"strategy": {"canary": {"maxSurge": "0%"}}})) == [
        without_surge]
    assert reasons(action("Rollout", {"strategy": {"canary": {"steps": []}}})) == []


@pytest.mark.slow
def test_prod_change_that_staging_runs_is_not_flagged(workdir: Path, capsys):
    project = applied(workdir, STAGED)
    pinned = f"images:\n  serve: {NEW_SERVE}\n"
    change(project, {"environments/staging.yaml": STAGED["environments/staging.yaml"] + pinned,
                     "environments/prod.yaml": STAGED["environments/prod.yaml"] + pinned})
    code, out = plan_output(capsys, "--format", "json", "--env", "prod")
    assert [r["code"] for r in json.loads(out)["environments"][0]["risks"]] == [
        "prod-not-in-staging"], "staging has not run it yet: it only changes in this plan"
    assert cli("apply", "-C", "project", "--out", "out", "--env", "staging") == 0
    code, out = plan_output(capsys, "--format", "json", "--env", "prod")
    [env] = json.loads(out)["environments"]
    assert env["changes"] and env["risks"] == []


# ---------------------------------------------------------------------------------------
# No phantom diffs: plan straight after apply is empty, in every environment


SMALL_PROJECTS = {
    "base": {"ml.yaml": BASE},
    "staged": STAGED,
    "gpu": {"ml.yaml": GPU_TRAINING},
    "two-models": {"ml.yaml": SECOND_MODEL},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL_PROJECTS))
def test_plan_after_apply_is_empty(name: str, workdir: Path, capsys):
    applied(workdir, SMALL_PROJECTS[name])
    for fmt in FORMATS:
        code, out = plan_output(capsys, "--detailed-exitcode", "--format", fmt)
        assert code == 0, out
    assert out.count('"changes": false') == 1 + len(json.loads(out)["environments"])


@pytest.mark.slow
def test_plan_after_apply_is_empty_for_the_example(tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert cli("apply", "-C", str(ROOT), "--out", str(out)) == 0
    capsys.readouterr()
    assert cli("plan", "-C", str(ROOT), "--out", str(out), "--detailed-exitcode") == 0
    text = capsys.readouterr().out
    assert text.count("No changes.") == 3, text
    # A second apply writes nothing at all.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert cli("apply", "-C", str(ROOT), "--out", str(out)) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_comment_only_edit_and_foreign_files(workdir: Path, capsys):
    project = applied(workdir, {"ml.yaml": BASE})
    env = workdir / "out" / "default"
    (env / "kustomization.yaml").write_text((env / "kustomization.yaml").read_text() + "# x\n")
    (env / "serving" / "service-churn-api.yaml").unlink()
    capsys.readouterr()
    assert cli("plan", "-C", "project", "--out", "out", "--detailed-exitcode") == 2
    out = capsys.readouterr().out
    assert "  ~ kustomization.yaml  (only comments or layout change)\n" in out
    assert "[hand-edited] kustomization.yaml was edited by hand" in out
    # Deleted by hand: apply puts it back, and the plan says so.
    assert "  + v1 Service demo-default/churn-api  (serving/service-churn-api.yaml)" in out
    assert out.endswith("Plan: 1 to add, 1 to change, 0 to delete.\n")

    (env / "serving" / "deployment-churn-v2-api.yaml").write_text("kind: Mine\n")
    change(project, {"ml.yaml": SECOND_MODEL})  # which generates that very path
    assert cli("plan", "-C", "project", "--out", "out") == 0
    out = capsys.readouterr().out
    assert "[not-generated] serving/deployment-churn-v2-api.yaml was not generated by mlc" in out
    assert cli("apply", "-C", "project", "--out", "out", "--force") == 1
    assert "error[MLC901]" in capsys.readouterr().err


def test_errors_exit_1_even_with_detailed_exitcode(workdir: Path, capsys):
    write_project(workdir / "project", {"ml.yaml": BASE.replace("cpu: 500m", "cpu: lots")})
    code, out = plan_output(capsys, "--detailed-exitcode")
    assert code == 1 and out == ""


def test_broken_index_is_an_error(workdir: Path, capsys):
    applied(workdir, {"ml.yaml": BASE})
    (workdir / "out" / "default" / ".mlc-index.json").write_text("{")
    capsys.readouterr()
    assert cli("plan", "-C", "project", "--out", "out", "--detailed-exitcode") == 1
    assert "error[MLC910]" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# --base-ref: the tree committed at a git ref


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=mlc", "-c", "user.email=mlc@example.com",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


@pytest.mark.slow
def test_base_ref_compares_with_the_committed_tree(tmp_path: Path, capsys):
    repo = tmp_path / "repo"
    project = write_project(repo / "ml", {"ml.yaml": BASE})  # the project in a sub-folder
    git(repo, "init", "-q", "-b", "main")
    assert cli("apply", "-C", str(project)) == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    change(project, {"ml.yaml": MORE_REPLICAS})
    (project / "deploy" / "default" / "kustomization.yaml").unlink()  # the disk does not count
    capsys.readouterr()

    code = cli("plan", "-C", str(project), "--base-ref", "main", "--format", "json",
               "--detailed-exitcode")
    plan = json.loads(capsys.readouterr().out)
    assert code == 2
    assert plan["base"] == {"type": "git", "ref": "main", "path": "ml/deploy",
                            "commit": git(repo, "rev-parse", "HEAD").strip()}
    [env] = plan["environments"]
    assert env["compared_with"] == "main:ml/deploy/default"
    changed = {(a["action"], a["kind"], a["name"]) for a in env["actions"]}
    assert {("change", "ConfigMap", "demo-config"),
            ("change", "HorizontalPodAutoscaler", "churn-api")} <= changed
    assert {a for a, _, _ in changed} == {"change"}
    validate_against_documented_schema(plan)

    code = cli("plan", "-C", str(project), "--base-ref", "main", "--format", "markdown")
    assert code == 0
    assert "Compared with `main`" in capsys.readouterr().out

    assert cli("apply", "-C", str(project)) == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")
    capsys.readouterr()
    assert cli("plan", "-C", str(project), "--base-ref", "HEAD", "--detailed-exitcode") == 0
    assert cli("plan", "-C", str(project), "--base-ref", "no-such-ref") == 1
    assert "error[MLC910]" in capsys.readouterr().err


def test_base_ref_outside_git(tmp_path: Path, capsys):
    write_project(tmp_path, {"ml.yaml": BASE})
    assert cli("plan", "-C", str(tmp_path), "--base-ref", "main") == 1
    assert "error[MLC910]" in capsys.readouterr().err


def test_save_with_base_ref_is_a_usage_error(tmp_path: Path):
    write_project(tmp_path, {"ml.yaml": BASE})
    assert cli("plan", "-C", str(tmp_path), "--base-ref", "main", "--save",
               str(tmp_path / "p")) == 2


# ---------------------------------------------------------------------------------------
# Objects and field-level diffs


def test_objects_are_keyed_by_identity_not_by_file():
    docs = b"apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: n}\n---\n" \
           b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"
    keys = [i.key.id for i in split_file("x.yaml", docs)]
    assert keys == ["v1/Service/n/a", "v1/ConfigMap//b"]
    [kust] = split_file("kustomization.yaml", b"apiVersion: x\nkind: Kustomization\n")
    assert kust.key == Key("file", path="kustomization.yaml")
    [broken] = split_file("bad.yaml", b"a: [\n")
    assert broken.value == "a: [\n"
    [py] = split_file("feast/features.py", b"x = 1\n")
    assert py.key.id == "feast/features.py" and py.value == "x = 1\n"


def test_field_diff():
    old = {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}],
                    "replicas": 1, "flag": True, "args": ["--a", "--b"]},
           "data": {"project.json": json.dumps({"m": {"v": 1}, "k": [1]})}}
    new = {"spec": {"containers": [{"name": "c", "image": "z"}, {"name": "a", "image": "x2"},
                                   {"name": "b", "image": "y"}],
                    "replicas": True, "flag": True, "args": ["--a", "--c", "--b"]},
           "data": {"project.json": json.dumps({"m": {"v": 2}, "k": [1]})}}
    got = [(c.op, c.path_text, c.old if c.op != "add" else c.new)
           for c in diff_values(old, new)]
    assert got == [
        ("change", 'data["project.json"].m.v', 1),
        ("change", "spec.args", ["--a", "--b"]),
        ("add", "spec.containers[name=c]", {"name": "c", "image": "z"}),
        ("change", "spec.containers[name=a].image", "x"),
        ("change", "spec.replicas", 1),  # 1 and true are different values
    ]
    reordered = diff_values({"l": [{"name": "a"}, {"name": "b"}]},
                            {"l": [{"name": "b"}, {"name": "a"}]})
    assert [(c.op, c.old, c.new) for c in reordered] == [("reorder", ["a", "b"], ["b", "a"])]
    assert format_path(("metadata", "labels", "app.kubernetes.io/name")) == \
        'metadata.labels["app.kubernetes.io/name"]'
    assert format_path(("spec", "x", Named("y"), 0)) == "spec.x[name=y][0]"
    assert diff_values({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]}) == []


# ---------------------------------------------------------------------------------------
# Formats


def _plan_with(risks: list[Risk], actions: list[Action]) -> Plan:
    return Plan({"type": "directory", "path": "out"},
                [EnvPlan("prod", "out/prod", actions, risks, {})])


def test_markdown_escapes_and_fences():
    key = Key("object", "v1", "ConfigMap", "ns", "c")
    text_change = diff_values({"data": {"a.sh": "x\n```\ny\n"}}, {"data": {"a.sh": "x\n```\nz\n"}})
    plan = _plan_with([Risk("gpu-change", "medium", "a <b> *c* @team `d*`")],
                      [Action("change", key, "c.yaml", changes=tuple(text_change))])
    md = render_markdown(plan)
    assert md.startswith(MARKER + "\n")
    assert r"a \<b\> \*c\* \@team `d*`" in md
    assert "\n````diff\n" in md  # longer than any run of backticks inside
    assert "<details open><summary><b>prod</b>" in md


def test_markdown_stays_under_the_comment_limit():
    key = Key("object", "v1", "ConfigMap", "ns", "c")
    big = tuple(diff_values({"data": {str(i): "a" for i in range(3000)}},
                            {"data": {str(i): "b" for i in range(3000)}}))
    md = render_markdown(_plan_with([], [Action("change", key, "c.yaml", changes=big)]))
    assert len(md) < 60_000 and "Field-level changes are left out" in md
    assert "~ v1 ConfigMap ns/c" in md


def test_colour_only_when_asked(workdir: Path, capsys):
    key = Key("object", "v1", "ConfigMap", "ns", "c")
    plan = _plan_with([], [Action("add", key, "c.yaml")])
    assert "\033[" in render_text(plan, color=True)
    assert "\033[" not in render_text(plan, color=False)
    applied(workdir, {"ml.yaml": BASE})
    assert "\033[" not in plan_output(capsys)[1]  # captured stdout is not a terminal


# ---------------------------------------------------------------------------------------
# The documented JSON schema, and the CI integrations


DOCS = ROOT / "docs"


def documented_schema() -> dict:
    text = (DOCS / "plan-json-schema.md").read_text()
    block = re.search(r"```json\n(\{\n  \"\$schema\".*?)\n```", text, re.S)
    assert block, "docs/plan-json-schema.md must hold the JSON Schema in a ```json block"
    return json.loads(block.group(1))


def validate_against_documented_schema(plan: dict) -> None:
    jsonschema.validate(plan, documented_schema())


def test_documented_schema_is_a_valid_schema():
    jsonschema.Draft202012Validator.check_schema(documented_schema())


def test_ci_files_parse_and_run_mlc():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "mlc.yml").read_text())
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    assert set(on) >= {"pull_request", "push"}
    steps = " ".join(json.dumps(job) for job in workflow["jobs"].values())
    for needed in ("mlc plan", "--format markdown", "--base-ref", "--detailed-exitcode",
                   "mlc apply", "fetch-depth", "<!-- mlc-plan -->", "git push"):
        assert needed in steps, needed

    gitlab = yaml.safe_load((ROOT / "ci" / "gitlab" / "mlc.gitlab-ci.yml").read_text())
    scripts = " ".join(json.dumps(v) for v in gitlab.values())
    for needed in ("mlc plan", "--format markdown", "--base-ref", "mlc apply", "git push",
                   "<!-- mlc-plan -->"):
        assert needed in scripts, needed

    # every action pinned by a commit, its tag beside it; Dependabot keeps them current
    for job in workflow["jobs"].values():
        assert job["timeout-minutes"] <= 30
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    text = (ROOT / ".github" / "workflows" / "mlc.yml").read_text()
    assert all(re.search(r"@[0-9a-f]{40}  # v\d+\.\d+\.\d+$", line)
               for line in text.splitlines() if "uses:" in line)
    assert workflow["jobs"]["plan"]["concurrency"]["cancel-in-progress"] is True
    dependabot = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert {u["package-ecosystem"] for u in dependabot["updates"]} == {"github-actions"}
    assert gitlab["mlc-plan"]["interruptible"] is True
    assert gitlab["mlc-plan"]["timeout"] and gitlab["mlc-apply"]["timeout"]

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    validate = next(h for h in hooks if h["id"] == "mlc-validate")
    assert validate["entry"] == "mlc validate" and validate["language"] == "python"
    assert validate["pass_filenames"] is False


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".mlc.lock"}


# ---------------------------------------------------------------------------------------
# The CI scripts themselves, run by bash against a local "origin" (nothing but the hosted
# APIs is replaced: the comment and note posting steps are not run here)


_ENV_CONDITION = re.compile(r"env\.(\w+) (==|!=) ''")


def ci_steps(job: dict, env: dict[str, str]) -> list[str]:
    """The job's scripts in order, less pip, honouring `if: env.X == ''` and `!= ''` (other
    conditions are on the outcome of earlier steps: kept)."""
    out = []
    for step in job["steps"]:
        if "run" not in step or "pip install" in step["run"]:
            continue
        condition = _ENV_CONDITION.fullmatch(step.get("if", ""))
        if condition is None or (not env.get(condition[1])) == (condition[2] == "=="):
            out.append(step["run"])
    return out


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def ci_repository(tmp_path: Path, ml_yaml: str) -> tuple[Path, Path, dict[str, str]]:
    """A bare local "origin" holding one commit of the project on main, a clone of it to
    run the scripts in, and the environment both CI templates' variables give them."""
    import os
    import sys

    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(origin, "config", "receive.advertisePushOptions", "true")  # GitLab's -o ci.skip
    git(tmp_path, "clone", "-q", str(origin), str(work))
    write_project(work, {"ml.yaml": ml_yaml})
    git(work, "checkout", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "project")
    git(work, "push", "-q", "origin", "main")
    # GitLab pushes to its https URL: point that URL at the local origin.
    gitlab_url = "https://oauth2:token@gitlab.example.com:443/group/proj.git"
    git(work, "config", f"url.{origin}.insteadOf", gitlab_url)
    workflow, gitlab = ci_templates()
    env = {**os.environ, **workflow["env"], **gitlab["variables"],
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "user.name",
           "GIT_CONFIG_VALUE_0": "ci", "GIT_CONFIG_KEY_1": "user.email",
           "GIT_CONFIG_VALUE_1": "ci@example.com"}
    return origin, work, env


def ci_templates() -> tuple[dict, dict]:
    return (yaml.safe_load((ROOT / ".github" / "workflows" / "mlc.yml").read_text()),
            yaml.safe_load((ROOT / "ci" / "gitlab" / "mlc.gitlab-ci.yml").read_text()))


@pytest.mark.slow
def test_ci_scripts_plan_and_apply(tmp_path: Path):
    origin, work, env = ci_repository(tmp_path, BASE)
    workflow, gitlab = ci_templates()

    # Merge to main: the GitHub apply job writes the tree and pushes it.
    github = {**env, "GITHUB_SHA": git(work, "rev-parse", "HEAD").strip(),
              "GITHUB_REF_NAME": "main", "ALLOW_DELETE": "false"}
    for script in ci_steps(workflow["jobs"]["apply"], github):
        result = _bash(script, work, github)
        assert result.returncode == 0, result.stderr
    assert git(origin, "log", "-1", "--format=%s", "main").startswith("mlc apply:")
    assert git(origin, "ls-tree", "-r", "--name-only", "main", "deploy/default/") \
        .count("\n") > 10
    assert ".mlc.lock" not in git(origin, "ls-tree", "-r", "--name-only", "main")

    # A pull request: the plan step compares with the base branch.
    git(work, "pull", "-q", "origin", "main")
    git(work, "checkout", "-q", "-b", "more-replicas")
    (work / "ml.yaml").write_text(MORE_REPLICAS)
    git(work, "commit", "-q", "-am", "more replicas")
    outputs, summary = tmp_path / "github_output", tmp_path / "summary.md"
    pr = {**env, "BASE_REF": "main", "GITHUB_OUTPUT": str(outputs),
          "GITHUB_STEP_SUMMARY": str(summary)}
    [plan_step] = ci_steps(workflow["jobs"]["plan"], pr)[:1]
    result = _bash(plan_step, work, pr)
    assert result.returncode == 0, result.stderr
    assert outputs.read_text() == "exitcode=2\n"
    comment = (work / "plan.md").read_text()
    # the first line names the project (MLC_PROJECT), so that two projects' comments differ
    assert comment.startswith("<!-- mlc-plan: . -->\n### mlc plan")
    assert MARKER not in comment and "spec.minReplicas: 1" in comment
    assert summary.read_text() == comment

    # The same on GitLab, against the merge request's target branch.
    mr = {**env, "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"}
    result = _bash("\n".join(gitlab["mlc-plan"]["script"]), work, mr)
    assert result.returncode == 0, result.stderr
    assert "MLC_GITLAB_TOKEN is not set" in result.stdout
    assert (work / "plan.md").read_text() == comment

    # A broken project: the comment says why, and the job fails.
    (work / "ml.yaml").write_text(BASE.replace("cpu: 500m", "cpu: lots"))
    result = _bash(plan_step, work, pr)
    assert outputs.read_text().endswith("exitcode=1\n")
    assert "### mlc plan failed" in (work / "plan.md").read_text()
    assert "error[MLC" in (work / "plan.md").read_text()
    (work / "ml.yaml").write_text(MORE_REPLICAS)

    # Merged: the GitLab apply job commits and pushes the new tree (with -o ci.skip).
    git(work, "checkout", "-q", "main")
    git(work, "merge", "-q", "--ff-only", "more-replicas")
    ci = {**env, "CI_SERVER_HOST": "gitlab.example.com", "CI_SERVER_PORT": "443",
          "CI_SERVER_PROTOCOL": "https", "CI_PROJECT_PATH": "group/proj",
          "MLC_GITLAB_TOKEN": "token", "CI_COMMIT_SHORT_SHA": "abc123",
          "CI_COMMIT_BRANCH": "main"}
    result = _bash("\n".join(gitlab["mlc-apply"]["script"]), work, ci)
    assert result.returncode == 0, result.stderr
    assert git(origin, "log", "-1", "--format=%s", "main") == "mlc apply: abc123\n"
    git(work, "fetch", "-q", "origin")
    assert cli("plan", "-C", str(work), "--base-ref", "origin/main",
               "--detailed-exitcode") == 0
