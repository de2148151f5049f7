"""The generated rules, checked and unit-tested by the real promtool.

For every environment of the example, of the small shop project and of a project with
hostile names: `promtool check rules` on every rule file, and `promtool test rules` on the
generated unit tests, which prove that each alert fires on its unhealthy synthetic series
(with exactly the expected labels and rendered annotations) and stays silent on healthy ones.
Then two deliberate breakages show that these tests do fail when a rule is wrong.

promtool comes from Debian's `prometheus` package: scripts/install-system-deps.sh installs
it, and CI runs that script. Missing here, it is installed the same way; only when that is
impossible (no root, no sudo, no network) are these tests skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlc.compiler.backends import monitoring
from mlc.compiler.ir import ResolvedProject
from mlc.compiler.render import render

from .conftest import ROOT
from .monitoring_projects import EXAMPLE_ENVS, SHOP_ENVS, example, hostile, shop

pytestmark = pytest.mark.slow
INSTALL = ROOT / "scripts" / "install-system-deps.sh"


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True,
                                timeout=600, stdin=subprocess.DEVNULL)
        path = shutil.which("promtool")
        if path is None:
            pytest.skip(f"promtool is missing and {INSTALL.name} could not install it "
                        f"(exit {result.returncode}): {result.stderr.strip()[-300:]}")
    return path


def write_tree(project: ResolvedProject, folder: Path) -> Path:
    for path, data in render(monitoring.emit(project)).items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def run(promtool: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def check_tree(promtool: str, folder: Path) -> None:
    rules = sorted(p.relative_to(folder).as_posix()
                   for p in (folder / "monitoring" / "rules").glob("*.rules.yaml"))
    tests = sorted(p.relative_to(folder).as_posix()
                   for p in (folder / "monitoring" / "tests").glob("*.test.yaml"))
    assert rules and len(rules) == len(tests), (rules, tests)
    checked = run(promtool, ["check", "rules", *rules], folder)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # One process per test file, as many as there are cores: promtool runs test groups one
    # after the other, and each costs a fresh in-memory TSDB.
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda t: run(promtool, ["test", "rules", t], folder), tests))
    failed = [r.stdout + r.stderr for r in results if r.returncode != 0]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("env", EXAMPLE_ENVS)
def test_example_rules_pass_promtool(promtool: str, tmp_path: Path, env: str):
    check_tree(promtool, write_tree(example(env), tmp_path))


@pytest.mark.parametrize("env", SHOP_ENVS)
def test_shop_rules_pass_promtool(promtool: str, tmp_path: Path, env: str):
    check_tree(promtool, write_tree(shop(tmp_path / "project", env), tmp_path / "out"))


def test_hostile_names_pass_promtool(promtool: str, tmp_path: Path):
    """Quotes, backslashes, braces and newlines in names survive PromQL and Go templates.

    The tests expect the exact hostile strings as label values and inside the rendered
    annotations, so an unescaped `{{` or `"` fails them (or fails to load the rules).
    """
    folder = write_tree(hostile(example("prod")), tmp_path)
    text = "".join(p.read_text() for p in (folder / "monitoring" / "tests").iterdir())
    assert "fraud\\\"api" in text and "customer_stats{{" in text  # the names did get there
    check_tree(promtool, folder)


def _break(folder: Path, rule_file: str, old: str, new: str) -> None:
    path = folder / "monitoring" / "rules" / rule_file
    text = path.read_text()
    assert old in text, f"{old!r} not in {rule_file}"
    path.write_text(text.replace(old, new))


def test_generated_tests_catch_a_rule_that_never_fires(promtool: str, tmp_path: Path):
    folder = write_tree(example("prod"), tmp_path)
    # The 1h/5m burn line now needs more than 100% errors: its unhealthy case must fail.
    _break(folder, "endpoint-fraud-api.rules.yaml", "> 0.0144", "> 1")
    result = run(promtool, ["test", "rules", "monitoring/tests/endpoint-fraud-api.test.yaml"],
                 folder)
    assert result.returncode != 0
    assert "alertname: EndpointAvailabilityBudgetBurn," in result.stdout + result.stderr


def test_generated_tests_catch_a_rule_that_always_fires(promtool: str, tmp_path: Path):
    folder = write_tree(example("prod"), tmp_path)
    # "drifted" now includes "not drifted": the healthy case must fail.
    _break(folder, "drift-fraud-inputs.rules.yaml", "> 0\n", ">= 0\n")
    result = run(promtool, ["test", "rules", "monitoring/tests/drift-fraud-inputs.test.yaml"],
                 folder)
    assert result.returncode != 0
    assert re.search(r"alertname: DriftDetected", result.stdout + result.stderr)


def test_ab_verdict_rules_pass_promtool(promtool: str, tmp_path: Path):
    """The verdict's alerts: a winner reached (naming it), a failing run, runs missing."""
    from . import argo_projects as ap

    (tmp_path / "project").mkdir()
    project = ap.resolve(tmp_path / "project", ap.project(ap.AB_VERDICT))
    folder = write_tree(project, tmp_path / "out")
    rules = (folder / "monitoring" / "rules" / "verdict-churn-ab.rules.yaml").read_text()
    for alert in ("ABVerdictReached", "ABVerdictFailing", "ABVerdictNotRunning"):
        assert f"alert: {alert}" in rules
    check_tree(promtool, folder)
