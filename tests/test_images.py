"""The runtime images' Dockerfiles, read as a builder reads them. Building them needs a
container engine and the package indexes, so that is `scripts/build-images.sh --check`
(docs/images.md); these checks hold the properties that script relies on."""

from __future__ import annotations

import re
import shlex

import pytest

from .conftest import ROOT

RUNTIMES = ["train", "serve", "drift"]


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = (ROOT / "mlc" / "runtime" / name / "Dockerfile").read_text("utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def stages(name: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(name):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


@pytest.mark.parametrize("name", RUNTIMES)
def test_multi_stage_with_the_same_base_and_only_the_virtualenv_copied(name):
    build, final = stages(name)
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    copies = [args for keyword, args in final if keyword in ("COPY", "ADD")]
    assert copies == ["--from=build /opt/mlc /opt/mlc"]
    # the build stage installs the runtime's own extra and removes pip from the virtualenv
    install = " ".join(args for keyword, args in build if keyword == "RUN")
    extras = re.search(r'"\.\[([a-z,]+)\]"', install)
    assert extras and name in extras.group(1).split(","), install
    assert "pip uninstall --yes pip" in install
    # the final stage installs nothing: no package manager, no compiler
    for keyword, args in final:
        if keyword == "RUN":
            assert not re.search(r"\b(apt-get|apt|pip|gcc|make)\b", args), args


@pytest.mark.parametrize("name", RUNTIMES)
def test_a_non_root_user_and_a_health_check(name):
    final = stages(name)[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) >= 10000 and gid.isdigit() and int(gid) >= 10000
    created = " ".join(args for keyword, args in final if keyword == "RUN")
    assert f"--uid {uid}" in created and f"--gid {gid}" in created
    checks = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert len(checks) == 1 and " CMD [" in checks[0]
    # the health check and the default command are exec form: no shell in between
    assert final[-1][0] == "CMD" and final[-1][1].startswith("[")
    # the user comes after everything that needs root
    keywords = [keyword for keyword, _ in final]
    assert "RUN" not in keywords[keywords.index("USER"):]


@pytest.mark.parametrize("name", RUNTIMES)
def test_what_the_build_copies_is_what_the_context_keeps(name):
    ignore = (ROOT / ".dockerignore").read_text("utf-8").split()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore  # everything else (a virtualenv, data, runs) stays out
    copied = set()
    for keyword, args in stages(name)[0]:
        if keyword == "COPY":
            copied.update(shlex.split(args)[:-1])
    assert copied == kept == {"pyproject.toml", "README.md", "mlc"}
