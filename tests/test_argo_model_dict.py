"""The Argo backend's fast `to_dict` gives exactly hera's `to_dict()`: same keys in the same
order, same values and types, for every workflow object of the example and golden projects."""

from __future__ import annotations

from pathlib import Path

import pytest
from hera.workflows import CronWorkflow, WorkflowTemplate
from hera.workflows import models as m

from mlc.compiler.backends import argo
from mlc.compiler.backends.argo import model_dict as fast
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import check_environment, list_environments

REPO = Path(__file__).parent.parent
PROJECTS = [REPO, *sorted(p for p in (REPO / "tests/golden/projects").iterdir() if p.is_dir())]


@pytest.mark.parametrize("root", PROJECTS, ids=lambda p: p.name)
def test_fast_to_dict_equals_hera(root: Path, monkeypatch) -> None:
    compared: list[str] = []
    real = fast.to_dict

    def both(hera_object):
        ours = real(hera_object)
        theirs = hera_object.to_dict()
        # repr as well: it tells 1 from 1.0 and True, a str from an enum, and key order
        assert ours == theirs and repr(ours) == repr(theirs), hera_object.name
        compared.append(type(hera_object).__name__)
        return ours

    monkeypatch.setattr(fast, "to_dict", both)
    for module in (argo.templates, argo.schedules):
        monkeypatch.setattr(module, "to_dict", both)
    pipelines = 0
    for env in list_environments(root):
        project = check_environment(root, env, Diagnostics())
        assert project is not None
        argo.emit(project)
        pipelines += len(project.pipelines)
    assert compared.count("WorkflowTemplate") == pipelines


def test_none_is_left_out_only_as_a_field_and_roots_are_unwrapped() -> None:
    template = WorkflowTemplate(
        name="t", entrypoint="main", labels={"a": "1"},
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
        arguments=m.Arguments(parameters=[m.Parameter(name="p", value=None, enum=["x", "y"])]),
        templates=[m.Template(name="main", container=m.Container(
            image="i", args=["a", "b"], resources=m.ResourceRequirements(
                limits={"cpu": m.Quantity(__root__="1")})))],
    )
    cron = CronWorkflow(name="c", schedule="0 * * * *", workflow_template_ref=m.WorkflowTemplateRef(
        name="t"))
    for obj in (template, cron):
        ours, theirs = fast.to_dict(obj), obj.to_dict()
        assert ours == theirs and repr(ours) == repr(theirs)
    limits = fast.to_dict(template)["spec"]["templates"][0]["container"]["resources"]["limits"]
    assert limits == {"cpu": "1"}


@pytest.mark.parametrize("root", PROJECTS[:1] + PROJECTS[-1:], ids=lambda p: p.name)
def test_shared_models_give_what_fresh_ones_give(root: Path, monkeypatch) -> None:
    """Models parsed once and shared (backends/argo/parsed.py) give the same objects as a
    fresh parse_obj at every use, and nothing changes them while the objects are built."""
    import json

    from mlc.compiler.backends.argo import parsed

    def emitted() -> list:
        out = []
        for env in list_environments(root):
            project = check_environment(root, env, Diagnostics())
            assert project is not None
            out += [(f.path, f.content) for f in argo.emit(project)]
        return out

    shared = emitted()
    for cls, text, model in parsed.cached():
        fresh = cls.parse_obj(json.loads(text))
        assert repr(fast.model_dict(model)) == repr(fast.model_dict(fresh)), (cls, text)
    assert parsed.cached(), "nothing was shared: the test checks nothing"
    monkeypatch.setattr(parsed, "_cache", {})
    monkeypatch.setattr(parsed, "_MAX_ENTRIES", 0)  # every call parses afresh
    assert repr(emitted()) == repr(shared)
