"""MLC110 over every string of ml.yaml and its overlays: the secret shapes that used to slip
through, the allowlist pragma for a false positive, and no alarm on the values a project
is full of (digests, URLs, references, placeholders).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlc.cli import main

from .bad_inputs import BASE, edit
from .conftest import ROOT, write_project

TRAINER = "      hardware: cpu-small\nserving"


def _custom(command: list[str] | None = None, args: list[str] | None = None,
            env: dict[str, str] | None = None) -> str:
    custom = {"image": "ghcr.io/acme/t:1", "command": command or ["python", "-m", "t"],
              "args": args or [], "env": env or {}}
    return edit(TRAINER, f"      hardware: cpu-small\n      custom: {json.dumps(custom)}\nserving")


def _description(text: str) -> str:
    return edit("  name: demo\n", f"  name: demo\n  description: {json.dumps(text)}\n")


# Assembled from parts, so that this file itself holds no secret-shaped literal
AWS_TEMP = "ASIA" + "Q3EGRXAMPLE7HTZ2K4F"[:16]
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
JWT = ".".join(["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
                "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
                "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"])
GITHUB_FINE = "github_pat_" + "11ABCDEFG0" * 5 + "_xyz"
GITLAB = "glpat-" + "Xa9" * 7
GOOGLE = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
STRIPE = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"
DISCORD = "https://discord.com/api/webhooks/" + "123456789012345678/" + "AbCdEf-gh_IJ" * 3

SHAPES = {
    "aws-temporary-key": _custom(env={"AWS_ACCESS_KEY_ID": AWS_TEMP}),
    "aws-secret-key": _custom(args=["--aws-secret-access-key=" + AWS_SECRET]),
    "jwt": _description(JWT),
    "github-fine-grained": _custom(env={"GH": GITHUB_FINE}),
    "gitlab": _description("deploy with " + GITLAB),
    "google-api-key": _custom(env={"MAPS": GOOGLE}),
    "stripe-live": _custom(env={"BILLING": STRIPE}),
    "discord-webhook": _description(DISCORD),
    "password-in-args": _custom(args=["--db-password", "hunter2hunter2"]),
    "password-flag-with-value": _custom(args=["--password=hunter2hunter2"]),
    "bearer-in-args": _custom(args=["-H", "Authorization: Bearer abcdef0123456789abcdef"]),
    "token-in-query": _description("https://api.example.com/v1/feed?limit=5&token=abcd1234efgh"),
    "redis-empty-user": edit("  imagePolicy: tag\n", "  imagePolicy: tag\n  mlflow:\n"
                             "    trackingUri: redis://:s3cretpass@cache.example.com:6379/0\n"),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_secret_shape_is_refused(tmp_path, capsys, shape):
    project = write_project(tmp_path / "p", {"ml.yaml": SHAPES[shape]})
    assert main(["validate", "-C", str(project), "--format", "json"]) == 1
    result = json.loads(capsys.readouterr().out)
    codes = [d["code"] for d in result["diagnostics"]]
    assert "MLC110" in codes, result
    [hit] = [d for d in result["diagnostics"] if d["code"] == "MLC110"]
    assert hit["file"] == "ml.yaml" and hit["line"] and "secrets:" in hit["help"]


SHOWN_SECRETS = {"aws-temporary-key": AWS_TEMP, "jwt": JWT, "stripe-live": STRIPE,
                 "password-in-args": "hunter2hunter2", "token-in-query": "abcd1234efgh",
                 "redis-empty-user": "s3cretpass"}


@pytest.mark.parametrize("shape", sorted(SHOWN_SECRETS))
def test_the_rendered_error_never_repeats_the_secret(tmp_path, capsys, shape):
    """CI posts validate's output into the pull request: the excerpt masks the value."""
    project = write_project(tmp_path / "p", {"ml.yaml": SHAPES[shape]})
    assert main(["validate", "-C", str(project)]) == 1
    err = capsys.readouterr().err
    assert "error[MLC110]" in err and "<redacted>" in err, err
    assert SHOWN_SECRETS[shape] not in err, err


def test_secret_in_an_overlay_is_located_there(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": BASE, "environments/prod.yaml":
                                             f"metadata:\n  description: {JWT}\n"})
    assert main(["validate", "-C", str(project), "--format", "json"]) == 1
    [hit] = [d for d in json.loads(capsys.readouterr().out)["diagnostics"]
             if d["code"] == "MLC110"]
    assert (hit["file"], hit["line"]) == ("environments/prod.yaml", 2)


@pytest.mark.parametrize("pragma", ["same line", "line above"])
def test_a_false_positive_is_marked_with_the_pragma(tmp_path, capsys, pragma):
    value = "https://api.example.com/v1/feed?limit=5&token=abcd1234efgh"
    if pragma == "same line":
        text = edit("  name: demo\n", f"  name: demo\n  description: {value}"
                    "  # pragma: allowlist secret\n")
    else:
        text = edit("  name: demo\n", "  name: demo\n  # pragma: allowlist nextline secret\n"
                    f"  description: {value}\n")
    project = write_project(tmp_path / "p", {"ml.yaml": text})
    assert main(["validate", "-C", str(project)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("value", [
    "ghcr.io/acme/app@sha256:" + "a" * 64, "https://mlflow.example.com/api",
    "s3://bucket/path/to/data.parquet", "${DB_PASSWORD}", "$(TOKEN)", "{{workflow.name}}",
    "user_id", "--epochs", "0123456789abcdef0123456789abcdef", "Fraud model, v2: AUC 0.93",
    "postgresql://db.example.com:5432/features",
])
def test_ordinary_values_pass(tmp_path, capsys, value):
    project = write_project(tmp_path / "p", {"ml.yaml": _custom(args=["--x", value])})
    assert main(["validate", "-C", str(project)]) == 0, capsys.readouterr().err
    project = write_project(tmp_path / "q", {"ml.yaml": _description(value)})
    assert main(["validate", "-C", str(project)]) == 0, capsys.readouterr().err


def test_flags_that_name_a_reference_pass(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": _custom(
        args=["--password-file", "/var/run/secrets/db/password", "--token", "$(TOKEN)"])})
    # a path to a mounted secret is not the secret
    code = main(["validate", "-C", str(project), "--format", "json"])
    hits = [d for d in json.loads(capsys.readouterr().out)["diagnostics"]]
    assert code == 0, hits


def test_detect_secrets_rules_run_where_a_value_looks_like_a_token(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": SHAPES["jwt"]})
    assert main(["validate", "-C", str(project)]) == 1
    assert "a JSON Web Token" in capsys.readouterr().err  # named by detect-secrets' rule


def test_an_ordinary_project_does_not_import_detect_secrets():
    # the library costs a tenth of a second; `mlc validate` of the example must not pay it
    code = ("import sys\nfrom mlc.cli import main\n"
            "assert main(['validate', '-C', sys.argv[1]]) == 0\n"
            "print('detect_secrets' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
