"""`mlc apply`: refuses before writing anything, saved plans and stale plans, crash safety,
and two applies that never interleave."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlc.cli import main
from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.pipeline import compile_project

from .bad_inputs import BASE
from .conftest import write_project
from .test_plan import MORE_REPLICAS, SECOND_MODEL, STAGED

INDEX = ".mlc-index.json"
HISTORY = ".mlc-history.jsonl"  # apply's audit record, swapped in with the tree


def cli(*args: str) -> int:
    return main(list(args))


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".mlc.lock"}


def staged(ml: str) -> dict[str, str]:
    return {**STAGED, "ml.yaml": ml}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def apply(*args: str) -> int:
    return cli("apply", "-C", "project", "--out", "out", *args)


def test_hand_edit_in_one_environment_stops_all_of_them(workdir: Path, capsys):
    project = write_project(workdir / "project", staged(BASE))
    assert apply() == 0
    edited = workdir / "out" / "staging" / "kustomization.yaml"
    edited.write_text(edited.read_text() + "# mine\n")
    (project / "ml.yaml").write_text(MORE_REPLICAS)  # both environments change
    before = tree(workdir / "out")
    capsys.readouterr()

    assert apply() == 1
    err = capsys.readouterr().err
    assert "error[MLC902]: staging/kustomization.yaml was edited by hand" in err
    assert "Nothing was applied." in err
    assert tree(workdir / "out") == before, "prod must not be written either"

    assert apply("--force") == 0
    assert "# mine" not in edited.read_text()
    assert cli("plan", "-C", "project", "--out", "out", "--detailed-exitcode") == 0


def test_prunes_only_what_it_generated(workdir: Path):
    project = write_project(workdir / "project", {"ml.yaml": SECOND_MODEL})
    assert apply() == 0
    env = workdir / "out" / "default"
    generated_v2 = sorted(p for p in tree(env) if "churn-v2" in p)
    assert generated_v2
    (env / "serving" / "notes-churn-v2.txt").write_text("mine\n")  # not mlc's
    (project / "ml.yaml").write_text(BASE)
    assert apply() == 0
    after = tree(env)
    assert [p for p in after if "churn-v2" in p] == ["serving/notes-churn-v2.txt"]
    index = json.loads(after[INDEX])["files"]
    assert set(index) == set(after) - {INDEX, HISTORY, "serving/notes-churn-v2.txt"}


def test_up_to_date_environment_is_not_touched(workdir: Path):
    write_project(workdir / "project", staged(BASE))
    assert apply() == 0
    inode = (workdir / "out" / "prod").stat().st_ino
    assert apply() == 0
    assert (workdir / "out" / "prod").stat().st_ino == inode


# ---------------------------------------------------------------------------------------
# Saved plans


def save_plan(*args: str) -> int:
    return cli("plan", "-C", "project", "--out", "out", "--save", "plan.json", *args)


def test_saved_plan_applies_exactly_what_was_planned(workdir: Path, capsys):
    project = write_project(workdir / "project", staged(BASE))
    assert apply() == 0
    (project / "ml.yaml").write_text(MORE_REPLICAS)
    assert save_plan("--env", "prod") == 0
    saved = json.loads((workdir / "plan.json").read_text())
    assert saved["out"] == "../out" and list(saved["files"]) == ["prod"]
    assert set(saved["inputs"]["sources"]) == {"ml.yaml", "environments/prod.yaml",
                                               "environments/staging.yaml"}
    capsys.readouterr()

    assert cli("apply", "-C", "project", "plan.json") == 0
    assert "prod: applied" in capsys.readouterr().out
    on_disk = tree(workdir / "out" / "prod")
    assert {p: on_disk[p].decode() for p in saved["files"]["prod"]} == {
        p: f["text"] for p, f in saved["files"]["prod"].items()}
    assert cli("plan", "-C", "project", "--out", "out", "--env", "prod",
               "--detailed-exitcode") == 0
    assert cli("plan", "-C", "project", "--out", "out", "--env", "staging",
               "--detailed-exitcode") == 2  # not in the plan, not applied


def test_stale_plan_is_refused(workdir: Path, capsys):
    project = write_project(workdir / "project", {"ml.yaml": BASE})
    assert apply() == 0
    (project / "ml.yaml").write_text(MORE_REPLICAS)
    assert save_plan() == 0
    before = tree(workdir / "out")

    (project / "ml.yaml").write_text(MORE_REPLICAS + "# a later edit\n")
    capsys.readouterr()
    assert cli("apply", "-C", "project", "plan.json") == 1
    err = capsys.readouterr().err
    assert "error[MLC911]: the plan plan.json is stale: ml.yaml changed since it was made" in err
    assert tree(workdir / "out") == before

    (project / "ml.yaml").write_text(MORE_REPLICAS)
    (project / "environments").mkdir()
    (project / "environments" / "default.yaml").write_text("{}\n")
    assert cli("apply", "-C", "project", "plan.json") == 1
    assert "environments/default.yaml changed" in capsys.readouterr().err
    (project / "environments" / "default.yaml").unlink()
    (project / "environments").rmdir()

    (workdir / "out" / "default" / "extra.txt").write_text("someone's\n")
    assert cli("apply", "-C", "project", "plan.json") == 1
    assert "changed since it was made (extra.txt)" in capsys.readouterr().err
    (workdir / "out" / "default" / "extra.txt").unlink()

    assert cli("apply", "-C", "project", "plan.json") == 0
    assert cli("apply", "-C", "project", "plan.json") == 1, "a plan applies once"


def test_damaged_plans_and_usage(workdir: Path, capsys):
    write_project(workdir / "project", {"ml.yaml": MORE_REPLICAS})
    assert save_plan() == 0
    doc = json.loads((workdir / "plan.json").read_text())
    first = next(iter(doc["files"]["default"].values()))
    first["text"] += "# slipped in\n"
    (workdir / "bad.json").write_text(json.dumps(doc))
    (workdir / "other.json").write_text('{"format": "terraform"}')
    capsys.readouterr()
    for name, message in [("bad.json", "does not match its recorded hash"),
                          ("other.json", "is not a plan saved by `mlc plan --save`"),
                          ("missing.json", "cannot read missing.json")]:
        assert cli("apply", "-C", "project", name) == 1
        err = capsys.readouterr().err
        assert "error[MLC912]" in err and message in err, err
    assert cli("apply", "-C", "project", "plan.json", "--env", "default") == 2
    assert not (workdir / "out").exists()


def test_saved_plan_moves_between_checkouts(workdir: Path):
    write_project(workdir / "ci1" / "project", {"ml.yaml": BASE})
    assert cli("plan", "-C", "ci1/project", "--save", "plan.json") == 0
    shutil.copytree(workdir / "ci1", workdir / "ci2")
    assert cli("apply", "-C", "ci2/project", "plan.json") == 0
    assert (workdir / "ci2" / "project" / "deploy" / "default" / INDEX).exists()
    assert not (workdir / "ci1" / "project" / "deploy").exists()


# ---------------------------------------------------------------------------------------
# A process killed in the middle of apply: every environment is the old tree or the new one


KILLER = textwrap.dedent('''
    import json, os, shutil, signal, sys
    from pathlib import Path
    from mlc.compiler import pipeline, swap, write
    from mlc.compiler.apply import run_apply
    from mlc.compiler.diagnostics import Diagnostics

    project, out, pristine = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    fallback, budget = sys.argv[4] == "1", int(sys.argv[5])
    if fallback:
        swap._exchange = None  # the two-rename swap of kernels without renameat2
    compiled = pipeline.compile_project(project, None, Diagnostics())
    pipeline.compile_project = lambda *a, **k: compiled  # compile once; fork per kill point

    NAMES = ("open", "rename", "replace", "link", "symlink", "mkdir", "rmdir", "unlink",
             "fsync", "chmod", "fchmod")
    SWAPS = ("rename", "replace", "exchange")

    def arm(n, log):
        """SIGKILL this process at its n-th call that touches the disk (counting from 1)."""
        def wrap(name, real):
            def call(*a, **k):
                log.append(name)
                if len(log) == n:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*a, **k)
            return call
        for name in NAMES:
            setattr(os, name, wrap(name, getattr(os, name)))
        if swap._exchange is not None:
            swap._exchange = wrap("exchange", swap._exchange)

    def apply():
        with open(os.devnull, "w") as null:
            return run_apply(project, None, out, diags=Diagnostics(), stdout=null)

    def state():
        envs = {}
        for env in ("prod", "staging"):
            folder, name = out / env, env
            if not folder.exists() and (out / f".mlc-old-{env}").exists():
                folder, name = out / f".mlc-old-{env}", env + " (aside)"
            envs[name] = {p.relative_to(folder).as_posix(): p.read_bytes().hex()
                          for p in sorted(folder.rglob("*")) if p.is_file()}
        return envs

    def reset():
        shutil.rmtree(out)
        shutil.copytree(pristine, out)

    def run(n, log_path=None):
        pid = os.fork()
        if pid == 0:
            log = []
            arm(n, log)
            code = apply()
            if log_path:
                Path(log_path).write_text(json.dumps(log))
            os._exit(code)
        return os.waitpid(pid, 0)[1]

    # One complete apply names every call; then kill at each chosen one.
    reset()
    log_path = out.parent / "calls.json"
    assert run(0, log_path) == 0
    calls = json.loads(log_path.read_text())
    points = set(range(1, len(calls) + 1, max(1, len(calls) // budget)))
    for i, name in enumerate(calls, 1):
        if name in SWAPS:
            points |= {i - 1, i, i + 1}
    results = []
    for n in sorted(p for p in points if 1 <= p <= len(calls)) + [len(calls) + 1]:
        reset()
        status = run(n)
        seen = state()
        journal = (out / ".mlc-transaction.json").exists()
        with write.output_lock(out):  # what every mlc run sees: the transaction finished
            settled = state()
        recovered = apply() == 0 and state()
        results.append({"n": n, "killed": os.WIFSIGNALED(status), "state": seen,
                        "journal": journal, "settled": settled, "recovered": recovered,
                        "leftovers_after_recovery": sorted(
                            p.name for p in out.iterdir()
                            if p.name.startswith(".mlc-") and p.name != ".mlc.lock")})
    print(json.dumps({"calls": len(calls), "runs": results}))
''')


def _hashes(files: dict[str, str]) -> dict[str, str]:
    return {p: hashlib.sha256(bytes.fromhex(h)).hexdigest() for p, h in files.items()}


@pytest.mark.slow
@pytest.mark.parametrize("fallback", [False, True], ids=["exchange", "two-renames"])
def test_killed_apply_leaves_old_or_new_tree(tmp_path: Path, fallback: bool):
    project = write_project(tmp_path / "project", staged(BASE))
    out, pristine = tmp_path / "out", tmp_path / "pristine"
    assert cli("apply", "-C", str(project), "--out", str(pristine)) == 0
    old = {env: tree(pristine / env) for env in ("prod", "staging")}
    (project / "ml.yaml").write_text(SECOND_MODEL)  # adds, changes and (later) prunes
    new_trees = {c.env: c.files for c in compile_project(project, None, Diagnostics())}
    shutil.copytree(pristine, out)

    # Kill at calls that touch the disk: evenly spread, and every call around a swap.
    result = subprocess.run([sys.executable, "-c", KILLER, str(project), str(out),
                             str(pristine), "1" if fallback else "0", "10" if fallback else "20"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    runs = report["runs"]
    assert len(runs) > 10 and all(r["killed"] for r in runs[:-1]) and not runs[-1]["killed"]

    def kind(env: str, files: dict[str, str]) -> str:
        hashes = _hashes(files)
        if hashes == {p: hashlib.sha256(b).hexdigest() for p, b in old[env].items()}:
            return "old"
        index = json.loads(bytes.fromhex(files[INDEX])) if INDEX in files else {}
        # The new tree comes with its audit record: the old history plus one line naming
        # exactly this tree's index (a tree without its record, or the reverse, is MIXED).
        history = bytes.fromhex(files.get(HISTORY, "")).splitlines()
        recorded = json.loads(history[-1]).get("tree_sha256") if history else None
        if {p: h for p, h in hashes.items() if p not in (INDEX, HISTORY)} == {
                p: hashlib.sha256(b).hexdigest() for p, b in new_trees[env].items()} \
                and set(index.get("files", {})) == set(new_trees[env]) \
                and history[:-1] == old[env][HISTORY].splitlines() \
                and recorded == hashes[INDEX]:
            return "new"
        return "MIXED"

    seen = set()
    for run in runs:
        kinds = {}
        for name, files in run["state"].items():
            env = name.split(" ")[0]
            if name.endswith("(aside)"):
                assert fallback, "only the two-rename swap ever leaves the tree aside"
            kinds[env] = kind(env, files)
        assert "MIXED" not in kinds.values(), (run["n"], kinds)
        # Killed between two swaps, the folders on disk may disagree for a moment; the
        # journal then says so, and the next mlc run finishes the transaction first.
        if kinds["prod"] != kinds["staging"]:
            assert run["journal"], (run["n"], kinds)
        settled = {env: kind(env, files) for env, files in run["settled"].items()}
        assert settled in ({"prod": "old", "staging": "old"},
                           {"prod": "new", "staging": "new"}), (run["n"], settled)
        seen.add((settled["prod"], settled["staging"]))
        assert run["recovered"], f"apply after a kill at {run['n']} failed"
        assert {env: kind(env, files) for env, files in run["recovered"].items()} == {
            "prod": "new", "staging": "new"}
        assert run["leftovers_after_recovery"] == []
    assert seen == {("old", "old"), ("new", "new")}


# ---------------------------------------------------------------------------------------
# Two applies at once never interleave


APPLIER = textwrap.dedent('''
    import sys, time
    from contextlib import contextmanager
    from pathlib import Path
    import mlc.compiler.apply as apply_module
    from mlc.cli import main

    project, out, role, sync = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    if role == "first":
        # Pause between the first and the second environment's swap until the other apply
        # is at the lock: without an apply-wide lock it would write both right now.
        import mlc.compiler.swap as swap_module
        real_swap, calls = swap_module._swap_in, []
        def slow(*a, **k):
            result = real_swap(*a, **k)
            calls.append(1)
            if len(calls) == 1:
                (sync / "paused").write_text("")
                deadline = time.monotonic() + 120
                while not (sync / "ready").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(1)
            return result
        swap_module._swap_in = slow
    elif role == "second":
        real_lock = apply_module.output_lock
        @contextmanager
        def announced(out_dir):
            (sync / "ready").write_text("")
            with real_lock(out_dir):
                yield
        apply_module.output_lock = announced
    sys.exit(main(["apply", "-C", project, "--out", out]))
''')


def _start(project: Path, out: Path, role: str, sync: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", APPLIER, str(project), str(out), role,
                             str(sync)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _which(out: Path, expected: dict[str, dict[str, dict[str, bytes]]]) -> set[str]:
    """The projects each environment's tree belongs to."""
    owners = set()
    for env in ("prod", "staging"):
        files = {p: b for p, b in tree(out / env).items() if p not in (INDEX, HISTORY)}
        owner = [name for name, trees in expected.items() if trees[env] == files]
        assert len(owner) == 1, f"{env} is neither project's tree"
        owners.add(owner[0])
    return owners


@pytest.mark.slow
def test_concurrent_applies_never_interleave(tmp_path: Path):
    a = write_project(tmp_path / "a", staged(BASE))
    b = write_project(tmp_path / "b", staged(SECOND_MODEL))
    expected = {name: {c.env: c.files for c in compile_project(p, None, Diagnostics())}
                for name, p in (("a", a), ("b", b))}
    out, sync = tmp_path / "out", tmp_path / "sync"
    sync.mkdir()

    # A pauses between its two environments until B is at the lock: B must wait for A.
    first = _start(a, out, "first", sync)
    deadline = time.monotonic() + 120
    while not (sync / "paused").exists():
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = _start(b, out, "second", sync)
    assert first.wait(120) == 0, first.stderr.read()
    assert second.wait(120) == 0, second.stderr.read()
    assert _which(out, expected) == {"b"}

    # And a free-running pair: whichever wins, every environment is from the same project.
    for _ in range(1):
        procs = [_start(a, out, "-", sync), _start(b, out, "-", sync)]
        assert [p.wait(120) for p in procs] == [0, 0]
        assert len(_which(out, expected)) == 1
    assert sorted(p.name for p in out.iterdir()) == [".mlc.lock", "prod", "staging"]


def test_lock_is_reentrant_within_one_process(tmp_path: Path):
    from mlc.compiler.write import output_lock, write_environment

    with output_lock(tmp_path), output_lock(tmp_path):
        assert write_environment(tmp_path, "x", {"a.txt": b"a\n"}, diags=Diagnostics())
    assert os.path.exists(tmp_path / "x" / "a.txt")
