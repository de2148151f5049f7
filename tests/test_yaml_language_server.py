"""The real yaml-language-server, driven over LSP, on the example and on broken copies.

What an editor shows is what the server makes of ml.schema.json and ml.overlay.schema.json
(its JavaScript regexes, its reading of `patternErrorMessage`, modelines, YAML 1.2): each
constrained field broken in a copy of the example must be underlined on its own line,
with the schema's wording; the example itself must show no error. One server for the module.
"""

from __future__ import annotations

import shutil

import pytest

from .conftest import ROOT
from .yaml_language_server import YamlLanguageServer, missing_reason

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")

# (case, file, the line as the example has it, the broken line, expected words)
BROKEN = [
    ("memory", "ml.yaml", "    memory: 1Gi", "    memory: 1GB", "expected bytes with a unit"),
    ("cpu", "ml.yaml", "    cpu: 500m", "    cpu: 500 m",
     "expected a positive Kubernetes quantity"),
    ("cron", "ml.yaml", '      schedule: "0 3 * * 1"', '      schedule: "61 3 * * 1"',
     "expected a cron schedule"),
    ("seconds", "ml.yaml", "      dataWindow: 90d", "      dataWindow: 90 days",
     "expected a duration of whole seconds"),
    ("duration", "ml.yaml", "        maxLatencyP99: 150ms", "        maxLatencyP99: 150 ms",
     "expected a duration"),
    ("dns-label", "ml.yaml", "  team: risk-ml", "  team: Risk_ML", "expected a DNS-1123 label"),
    ("label-value", "ml.yaml", "    cost-center: risk", "    cost-center: risk!",
     "expected a label value"),
    ("label-key", "ml.yaml", "    cost-center: risk", "    cost/center/x: risk",
     "expected a label key"),
    ("image", "ml.yaml", "  train: ghcr.io/mlc-dev/mlc-train:0.1.0@sha256:",
     "  train: GHCR.io/mlc-train #", "expected an image reference"),
    ("field-name", "ml.yaml", "      column: is_fraud", "      column: is-fraud",
     "expected a field name"),
    ("name-key", "ml.yaml", "  fraud-api:", "  Fraud_API:", "expected a name"),
    ("secret-key", "ml.yaml", "key: slack-webhook-url}", "key: ../url}",
     "expected a key of a Secret"),
    ("percent", "ml.yaml", "      availability: 99.9", "      availability: 100",
     "exclusive maximum of 100"),
    ("fraction", "ml.yaml", "        maxErrorRate: 0.01", "        maxErrorRate: 1.5",
     "maximum of 1."),
    ("source-path", "ml.yaml", "    path: data/transactions.parquet",
     "    path: /data/transactions.parquet", "expected a path inside the project folder"),
    ("env-var", "ml.yaml", "        learningRate: 0.001",
     "        learningRate: 0.001\n        env: {MLC_SEED: '1'}", "environment variable name"),
    ("version", "ml.yaml", "  version: 1.4.0", "  version: 1.4.0 beta", "does not match"),
    ("slack-channel", "ml.yaml", 'channel: "#risk-ml-alerts"', 'channel: "#Risk ML"',
     "does not match"),
    ("unknown-key", "ml.yaml", "    framework: torch", "    framewrk: torch", "framewrk"),
    ("overlay-namespace", "environments/prod.yaml", "  namespace: fraud-prod",
     "  namespace: kube-system", "other than `default` and `kube-*`"),
    ("overlay-cron", "environments/prod.yaml", '      schedule: "0 2 * * *"',
     '      schedule: "0 2 * * * *"', "expected a cron schedule"),
    ("overlay-patch", "environments/prod.yaml", '      schedule: "0 2 * * *"',
     "      schedule: {$patch: remove}", "delete"),
]
# Valid edits an editor must not underline.
FINE = [
    ("overlay-delete", "environments/prod.yaml", '      schedule: "0 2 * * *"',
     "      schedule: {$patch: delete}"),
    ("overlay-partial-source", "environments/dev.yaml", "platform:",
     "sources:\n  transactions: {path: data/transactions.parquet}\nplatform:"),
]


def _copy(folder, name, file, old, new):
    case = folder / name
    case.mkdir()
    for schema in ("ml.schema.json", "ml.overlay.schema.json"):
        shutil.copy(ROOT / schema, case / schema)
    shutil.copy(ROOT / "ml.yaml", case / "ml.yaml")
    shutil.copytree(ROOT / "environments", case / "environments")
    target = case / file
    if old is not None:
        text = target.read_text()
        assert text.count(old) >= 1, (name, old)
        lines = text.split("\n")
        line = next(i for i, x in enumerate(lines) if old in x)
        if old.startswith("  train:"):  # replace the whole value
            lines[line] = new
        else:
            lines[line] = lines[line].replace(old, new)
        target.write_text("\n".join(lines))
        return target, line + new.count("\n")  # an added line: the last one is the broken
    return target, None


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yls")
    cases = {"example": _copy(folder, "example", "ml.yaml", None, None)}
    for env in ("dev", "prod", "staging"):
        cases[f"example-{env}"] = (folder / "example" / "environments" / f"{env}.yaml", None)
    for name, file, old, new, _ in BROKEN:
        cases[name] = _copy(folder, name, file, old, new)
    for name, file, old, new in FINE:
        cases[name] = _copy(folder, name, file, old, new)
    server = YamlLanguageServer(folder)
    try:
        uris = {name: server.open(path) for name, (path, _) in cases.items()}
        diagnostics = server.diagnostics_of(list(uris.values()))
        hover = server.hover(uris["example"], _line_of(cases["example"][0],
                                                       "        maxLatencyP99:"), 10)
    finally:
        server.close()
    return ({name: (diagnostics[uris[name]], line) for name, (_, line) in cases.items()},
            hover, folder)


def _line_of(path, text):
    return next(i for i, x in enumerate(path.read_text().split("\n")) if x.startswith(text))


def _errors(diagnostics):
    return [d for d in diagnostics if d.get("severity", 1) == 1]


@pytest.mark.parametrize("name", ["example", "example-dev", "example-prod", "example-staging"])
def test_the_example_shows_no_error(published, name):
    diagnostics, _ = published[0][name]
    assert _errors(diagnostics) == []


@pytest.mark.parametrize("name", [c[0] for c in BROKEN])
def test_a_broken_field_is_underlined_on_its_line(published, name):
    diagnostics, line = published[0][name]
    expected = next(c[4] for c in BROKEN if c[0] == name)
    errors = _errors(diagnostics)
    assert errors, f"{name}: no error"
    on_line = [d for d in errors if d["range"]["start"]["line"] == line]
    assert on_line, f"{name}: errors on other lines only: {errors}"
    assert any(expected in d["message"] for d in on_line), [d["message"] for d in on_line]


@pytest.mark.parametrize("name", [c[0] for c in FINE])
def test_a_valid_overlay_edit_is_not_underlined(published, name):
    diagnostics, _ = published[0][name]
    assert _errors(diagnostics) == []


def test_hover_shows_the_title_and_the_description(published):
    hover = published[1]
    assert "Max p99 latency" in hover
    assert "p99 latency is above this" in hover


@pytest.mark.parametrize("name", [c[0] for c in BROKEN])
def test_mlc_refuses_what_the_editor_underlines(published, name):
    """The other side of the agreement: each broken copy fails `mlc validate` too."""
    from mlc.compiler.diagnostics import Diagnostics
    from mlc.compiler.pipeline import load_environment
    from mlc.compiler.validate import validate_document, validate_layer

    folder = published[2] / name
    env = "prod" if next(c[1] for c in BROKEN if c[0] == name).startswith("environments/") \
        else "dev"
    diags = Diagnostics()
    loaded = load_environment(folder, env, diags)
    if loaded is not None:  # as `mlc validate` checks: ml.yaml alone, and merged
        validate_layer(loaded.base, diags)
        validate_document(loaded.document, diags)
    assert diags.has_errors(), name
