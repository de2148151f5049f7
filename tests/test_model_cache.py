"""The built models' cache (mlc/model_cache.py): what mlc says is the same without a cache,
with an empty one (the run that fills it) and with a full one; a cache file that is not this
user's alone, or not whole, is not read; an unusable cache folder costs speed only."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from . import bad_inputs
from .conftest import ROOT, write_project

# Runs mlc commands in one process and prints what each wrote, and whether the schema family
# was read from a cache file (`hit`) and completed from it (Project's validator).
RUNNER = """
import contextlib, io, json, sys
from mlc.cli import main
from mlc.schema.types import SCHEMA_FAMILY
from mlc.compiler.ir import IR_FAMILY
out = {"hit": [SCHEMA_FAMILY.hit, IR_FAMILY.hit], "runs": []}
for argv in json.loads(sys.argv[1]):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    out["runs"].append([code, stdout.getvalue(), stderr.getvalue()])
import inspect, re
from mlc.compiler.ir import Origin, ResolvedProject
from mlc.schema import Project
for c in (Project, ResolvedProject, Origin):  # completed (defer_build), then introspected
    c.model_rebuild()
out["runs"].append([re.sub(" at 0x[0-9a-f]+", "", str(inspect.signature(c)))
                    for c in (Project, ResolvedProject, Origin)])
print(json.dumps(out))
"""


def _run(cache: str, commands: list[list[str]], cwd: Path) -> dict:
    env = {**os.environ, "MLC_CACHE_DIR": cache, "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(commands)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def projects(tmp_path: Path) -> tuple[Path, list[list[str]]]:
    """The example and two wrong projects whose diagnostics read field descriptions and
    validators (an unknown key, a bad name, a bad quantity), and the commands run on them."""
    wrong = [
        bad_inputs.BASE.replace("  imagePolicy: tag\n", "  imagePolicy: tag\n  imagePolicyy: x\n"),
        bad_inputs.BASE.replace("  churn-api:\n", "  Churn_API:\n").replace("cpu: 500m",
                                                                           "cpu: 500 m"),
    ]
    commands = [["validate", "-C", str(ROOT)], ["validate", "-C", str(ROOT), "--format", "json"],
                ["schema"], ["schema", "--overlay"]]
    for i, text in enumerate(wrong):
        folder = write_project(tmp_path / f"wrong{i}", {"ml.yaml": text})
        commands.append(["validate", "-C", str(folder)])
    return tmp_path, commands


def test_the_same_answers_without_with_an_empty_and_with_a_full_cache(projects):
    tmp, commands = projects
    cache = tmp / "cache"
    none = _run("", commands, tmp)
    filling = _run(str(cache), commands, tmp)
    files = sorted(p.name.split("-")[0] for p in cache.iterdir())
    full = _run(str(cache), commands, tmp)
    assert none["hit"] == [False, False] and filling["hit"] == [False, False]
    assert files == ["ir", "schema"] and full["hit"] == [True, True]
    assert none["runs"] == filling["runs"] == full["runs"]
    codes = [code for code, _, _ in full["runs"][:-1]]
    assert codes == [0, 0, 0, 0, 1, 1]  # the wrong projects are wrong, and said so
    schema = full["runs"][2][1]
    assert schema == (ROOT / "ml.schema.json").read_text()


def test_every_class_is_stored_with_its_schema(tmp_path):
    """A class stored without its schema (a lambda in it) would be built by pydantic in every
    process: correct, but slow, and silently so."""
    _run(str(tmp_path), [["validate", "-C", str(ROOT)]], tmp_path)
    for path in tmp_path.iterdir():
        classes = pickle.loads(path.read_bytes())["classes"]
        assert classes, path.name
        unstored = sorted(name for name, (_, blob) in classes.items() if blob is None)
        assert unstored == [], f"{path.name}: {unstored}"


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="file ownership is POSIX")
def test_a_file_others_may_write_or_a_broken_one_is_not_read(projects):
    tmp, commands = projects
    commands = commands[-1:]  # a wrong project: descriptions and validators at work
    cache = tmp / "cache"
    expected = _run("", commands, tmp)["runs"]
    _run(str(cache), commands, tmp)
    schema_file = next(cache.glob("schema-*.pickle"))
    schema_file.chmod(0o664)  # group-writable: anyone in the group could plant code in it
    result = _run(str(cache), commands, tmp)
    assert result["hit"] == [False, True] and result["runs"] == expected
    schema_file.chmod(0o600)
    stored = pickle.loads(schema_file.read_bytes())
    schema_file.write_bytes(pickle.dumps({**stored, "key": "another"}))  # not this key's file
    result = _run(str(cache), commands, tmp)
    assert result["hit"] == [False, True] and result["runs"] == expected
    schema_file.write_bytes(schema_file.read_bytes()[:1000])  # cut short
    result = _run(str(cache), commands, tmp)
    assert result["hit"] == [False, True] and result["runs"] == expected


def test_an_unusable_cache_folder_costs_speed_only(projects):
    tmp, commands = projects
    blocker = tmp / "a-file"
    blocker.write_text("not a folder")
    expected = _run("", commands[-1:], tmp)["runs"]
    result = _run(str(blocker / "cache"), commands[-1:], tmp)
    assert result["hit"] == [False, False] and result["runs"] == expected
    assert blocker.read_text() == "not a folder"


def test_the_families_import_nothing_of_mlc_that_their_key_does_not_hash():
    """A family's cache key hashes its own modules' sources; a value they took from another
    mlc module (a list of names, say) could change without changing the key."""
    import ast

    families = {"mlc.schema": sorted((ROOT / "mlc" / "schema").glob("*.py")),
                "mlc.compiler.ir": [ROOT / "mlc" / "compiler" / "ir.py"]}
    outside = []
    for package, paths in families.items():
        for path in paths:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    if node.level == 0:
                        module = node.module or ""
                    elif package == "mlc.schema":
                        module = ".".join(["mlc", "schema"][:3 - node.level] + [node.module or ""])
                    else:
                        module = ".".join(["mlc", "compiler"][:3 - node.level] +
                                          [node.module or ""])
                    names = [module.rstrip(".")]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                for name in names:
                    if name.startswith("mlc") and not name.startswith(package) and \
                            name != "mlc.model_cache":
                        outside.append(f"{path.relative_to(ROOT)}: {name}")
    assert outside == []


def test_a_new_file_replaces_the_oldest_files_of_other_sources(tmp_path):
    stale = [tmp_path / f"schema-{n:032x}.pickle" for n in range(5)]
    for age, path in enumerate(stale):
        path.write_bytes(b"of another mlc")
        os.utime(path, (1_000_000 - age, 1_000_000 - age))  # stale[0] the newest
    other = tmp_path / "notes.txt"
    other.write_text("not ours")
    _run(str(tmp_path), [["validate", "-C", str(ROOT)]], tmp_path)
    assert [p.exists() for p in stale] == [True, True, True, False, False] and other.exists()
    assert len(list(tmp_path.glob("ir-*.pickle"))) == 1
