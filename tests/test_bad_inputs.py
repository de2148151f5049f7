"""Every bad-input case: its code at its file:line:col, exit 1, no traceback, nothing written.

The rendered diagnostics are snapshot files (tests/snapshots/diagnostics/<case>.txt), so a
change in wording is reviewed like any other change; update them with --update-golden.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlc.cli import main

from .bad_inputs import CASES, Case
from .conftest import write_project

SNAPSHOTS = Path(__file__).parent / "snapshots" / "diagnostics"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_there_are_enough_cases():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, capsys, update_golden: bool):
    project = write_project(tmp_path / "project", case.project)
    if "ml.yaml" not in case.files and case.name == "missing-ml-yaml":
        (project / "ml.yaml").unlink()
    out = tmp_path / "out"
    (out / "prod").mkdir(parents=True)
    (out / "prod" / "keep.yaml").write_text("kind: Untouched\n")
    before = _tree(out)

    args = ["compile", "-C", str(project), "--out", str(out)]
    if case.env:
        args += ["--env", case.env]
    started = time.perf_counter()
    code = main(args)
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err

    assert code == 1, err
    assert "Traceback" not in err
    assert f"error[{case.code}]" in err, err
    if case.where:
        assert _location_of(err, case.code) == case.where, err
    for code, where in case.also:
        assert where in _locations_of(err, code), err
    assert _tree(out) == before, "a failed compile must write nothing"
    # a bound on hangs (a read that never ends, a blow-up), not a speed test: generous enough
    # for a loaded 2-core runner with the suite running in parallel
    assert elapsed < 30, f"{case.name} took {elapsed:.1f}s"

    snapshot = SNAPSHOTS / f"{case.name}.txt"
    text = err.replace(str(project) + "/", "").replace(str(project), "<project>")
    if update_golden:
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(text)
    assert snapshot.exists(), f"no snapshot for {case.name}: run pytest --update-golden"
    assert text == snapshot.read_text()


def _locations_of(err: str, code: str) -> list[str]:
    """Where each diagnostic with `code` points, in order."""
    lines = err.splitlines()
    return [lines[i + 1].split("-->")[1].split("(at")[0].strip()
            for i, line in enumerate(lines[:-1])
            if line.startswith(f"error[{code}]") and "-->" in lines[i + 1]]


def _location_of(err: str, code: str) -> str | None:
    lines = err.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"error[{code}]"):
            for follow in lines[i + 1:i + 3]:
                if follow.strip().startswith("-->"):
                    return follow.split("-->")[1].split("(at")[0].strip()
            return None
    return None


def test_json_format_carries_the_same_facts(tmp_path: Path, capsys):
    import json

    case = next(c for c in CASES if c.name == "unknown-nested-key")
    project = write_project(tmp_path, case.project)
    assert main(["validate", "-C", str(project), "--format", "json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False
    [d] = [d for d in result["diagnostics"] if d["code"] == "MLC101"]
    assert (d["file"], d["line"], d["column"]) == ("ml.yaml", 10, 5)
    assert d["path"] == "hardware.cpu-small.memroy"
    assert d["help"] == "did you mean `memory`?"
