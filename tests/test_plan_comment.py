"""The plan as a pull-request comment: a small edit across three environments reads small.

The edit adds a comment line at the top of ml.yaml (every provenance line number moves), a
feature description (Feast's features.py changes, and so does the ConfigMap that carries it)
and a batch endpoint (four new resources in each kustomization). The comment must keep the
field-level detail: the ConfigMap's copy folded into a note, the provenance counted, not
shown, the resource list as the items added. Its text is a snapshot, and its size is bounded.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from mlc.cli import main
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.plan.command import run_plan
from mlc.compiler.plan.diff import diff_values
from mlc.compiler.plan.formats import render_markdown
from mlc.compiler.plan.model import Action, EnvPlan, Plan
from mlc.compiler.plan.objects import Key

from .bad_inputs import BASE, edit
from .conftest import write_project
from .test_plan import check_snapshot

SNAPSHOT = Path(__file__).parent / "snapshots" / "plan" / "comment-small-edit.md"
ENVS = {f"environments/{e}.yaml": f"platform: {{namespace: demo-{e}, development: true}}\n"
        for e in ("dev", "staging", "prod")}
EDITED = "# Churn, by user.\n" + edit(
    "      - {name: clicks, type: int64}\nmodels",
    "      - {name: clicks, type: int64, description: Clicks per day.}\nmodels",
    edit("serving:\n", "serving:\n  churn-batch:\n    model: churn\n    mode: batch\n"
         "    batch: {schedule: \"0 2 * * *\", input: events, output: out/scores.parquet}\n"))


@pytest.fixture(scope="module")
def comment(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("comment")
    project = write_project(folder / "project", {"ml.yaml": BASE, **ENVS})
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["apply", "-C", str(project), "--out", str(folder / "out")]) == 0
    (project / "ml.yaml").write_text(EDITED)
    out = io.StringIO()
    with contextlib.chdir(folder), contextlib.redirect_stderr(io.StringIO()):
        assert run_plan(Path("project"), None, Path("out"), fmt="markdown", diags=Diagnostics(),
                        stdout=out) == 0
    return out.getvalue()


@pytest.mark.slow  # compiles three environments twice (about 10 s on two busy cores)
def test_small_edit_comment_snapshot(comment, update_golden):
    check_snapshot(SNAPSHOT, comment, update_golden)


@pytest.mark.slow
def test_small_edit_keeps_its_detail_and_stays_small(comment):
    assert len(comment) < 12_000, len(comment)
    assert "left out" not in comment
    assert comment.count('data["features.py"]: the same change as feast/features.py') == 3
    assert comment.count("+               Field(name='clicks', dtype=Int64, "
                         "description='Clicks per day.', tags={}),") == 3  # once per env
    assert "source line numbers in the provenance moved: not shown" in comment
    assert '"line"' not in comment and "origin.line" not in comment
    assert comment.count('+     resources[]: "serving/configmap-churn-batch.yaml"') == 3
    assert '-     resources: [' not in comment  # never the whole list


def _action(name: str, n: int) -> Action:
    key = Key("object", "v1", "ConfigMap", "ns", name)
    changes = diff_values({"data": {str(i): "a" for i in range(n)}},
                          {"data": {str(i): "b" for i in range(n)}})
    return Action("change", key, f"{name}.yaml", changes=tuple(changes))


def test_an_oversized_plan_is_cut_per_object_largest_first():
    actions = [_action("small-a", 3), _action("huge", 3000), _action("small-b", 5),
               _action("big", 400)]
    plan = Plan({"type": "directory", "path": "out"}, [EnvPlan("prod", "out/prod", actions,
                                                               [], {})])
    whole = render_markdown(plan, limit=10**9)
    md = render_markdown(plan, limit=30_000)
    assert len(whole) > 30_000 >= len(md)
    # the small objects keep every field; the huge one is listed with a count
    assert md.count("-     data") >= 8
    assert "~ v1 ConfigMap ns/huge  (huge.yaml)\n      … 3000 field changes left out" in md
    assert "Field-level changes are left out for 1 object, the largest" in md
    assert "~ v1 ConfigMap ns/big  (big.yaml)\n-     data" in md
    # a tighter limit cuts the next largest too, and says so
    tight = render_markdown(plan, limit=9_000)
    assert "Field-level changes are left out for 2 objects, the largest" in tight
    assert "… 400 field changes left out" in tight
    assert "~ v1 ConfigMap ns/small-a  (small-a.yaml)\n-     data" in tight


def test_a_list_that_changed_reads_as_its_items():
    key = Key("file", path="kustomization.yaml")
    changes = diff_values({"resources": ["a.yaml", "b.yaml", "c.yaml"]},
                          {"resources": ["a.yaml", "c.yaml", "d.yaml"]})
    plan = Plan({"type": "directory", "path": "out"}, [EnvPlan(
        "prod", "out/prod", [Action("change", key, "kustomization.yaml",
                                    changes=tuple(changes))], [], {})])
    md = render_markdown(plan)
    assert '-     resources[]: "b.yaml"\n+     resources[]: "d.yaml"\n' in md
    assert '"a.yaml"' not in md
