"""What may import what: `mlc validate` stays light; the compiler never imports the runtimes."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from .conftest import ROOT

HEAVY = ("hera", "kubernetes", "kubernetes_validate", "torch", "mlflow", "evidently", "feast",
         "pandas", "numpy", "jinja2", "mlc.runtime", "mlc.local", "optuna", "shap",
         "fairlearn", "confluent_kafka", "great_expectations", "dvc", "openlineage",
         "pymilvus", "milvus_lite")


def _validate_modules(project) -> list[str]:
    code = (
        "import sys, json\n"
        "from mlc.cli import main\n"
        "rc = main(['validate', '-C', sys.argv[1]])\n"
        "print(json.dumps([rc, sorted(sys.modules)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(project)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rc, modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert rc == 0, result.stdout + result.stderr  # the project is valid: every pass ran
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_validate_imports_nothing_heavy():
    assert _validate_modules(ROOT) == [], "mlc validate imported heavy modules"


def test_validate_of_every_lifecycle_setting_imports_nothing_heavy(tmp_path):
    """A project with a hyperparameter search, SHAP, fairness and slice gates, lineage, a
    DVC-pinned source produced by dbt (and waited for), and the LLM example: validating
    them reads none of the libraries that run them."""
    from . import lifecycle_projects as lp
    from .test_fairness import EVALUATION
    from .test_search import SEARCH

    model = {"training": {"builtin": {"hiddenLayers": [8], "epochs": 2, "batchSize": 64},
                          "search": {**SEARCH, "pruning": True}},
             "evaluation": {**EVALUATION, "explain": {"samples": 40, "background": 20}}}
    values = lp.values(model)
    values["platform"]["lineage"] = {"transport": "file", "namespace": "tiny",
                                     "path": "lineage/events.jsonl"}
    values["sources"]["rows"]["version"] = {"dvc": {"repo": "https://git.example.com/data",
                                                    "rev": "v2"}}
    values["sources"]["rows"]["producedBy"] = {"dbt": {"project": "analytics",
                                                       "model": "fct_rows"}}
    (tmp_path / "ml.yaml").write_text(json.dumps(values, indent=2))
    assert _validate_modules(tmp_path) == []
    assert _validate_modules(ROOT / "examples" / "llm") == []


def test_compiler_never_imports_the_runtimes():
    offenders = []
    for path in sorted((ROOT / "mlc" / "compiler").rglob("*.py")) + sorted(
            (ROOT / "mlc" / "schema").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] if node.level == 0 else []
                if node.level and "runtime" in (node.module or "").split("."):
                    names = ["mlc.runtime"]
            for name in names:
                if name.split(".")[0] in ("torch", "mlflow", "evidently", "feast") or \
                        name.startswith(("mlc.runtime", "mlc.local")):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_runtime_never_imports_the_backends():
    offenders = []
    runtime = ROOT / "mlc" / "runtime"
    for path in sorted(runtime.rglob("*.py")) if runtime.exists() else []:
        text = path.read_text()
        if "compiler.backends" in text or "import hera" in text or "from hera" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_validate_starts_fast():
    """Not a timing assertion (bench/ measures speed): a guard that nothing slow sneaks in."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mlc.cli"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "pydantic" not in result.stderr, "pydantic must load only when a command needs it"
