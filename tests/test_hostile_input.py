"""Input that is hostile rather than merely wrong: files that are not what their name says,
links out of the project, lines and alias bombs built to cost time, control characters
aimed at the terminal that shows the diagnostics, a damaged index in the output tree.

Each case runs the real CLI: exit 1, the located code, no traceback, nothing written, and
nothing of what the hostile file points at in the output.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from mlc.cli import main
from mlc.compiler.diagnostics import Diagnostic, Diagnostics, Span, printable, render_text
from mlc.compiler.load import MAX_FILE_BYTES, MAX_LINE_CHARS, load_yaml_text
from mlc.compiler.reading import ReadRefused, read_regular_file

from .bad_inputs import BASE, edit
from .conftest import write_project

SECRET = "MLC_TEST_SECRET_VALUE_8d1f"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _compile(project: Path, tmp_path: Path, capsys, *extra: str) -> tuple[int, str]:
    out = tmp_path / "out"
    (out / "prod").mkdir(parents=True, exist_ok=True)
    (out / "prod" / "keep.yaml").write_text("kind: Untouched\n")
    before = _tree(out)
    code = main(["compile", "-C", str(project), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert _tree(out) == before, "a failed compile must write nothing"
    return code, err


def _location(err: str, code: str) -> str:
    lines = err.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"error[{code}]"))
    return lines[at + 1].split("-->")[1].split("(at")[0].strip()


# ---------------------------------------------------------------------------------------
# Files that are not what their name says


@pytest.fixture
def outside_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "elsewhere" / "environ"
    secret.parent.mkdir()
    # not YAML at all, so a parser error excerpt would be the line itself
    secret.write_text(f"CI_TOKEN={SECRET}: [\n")
    return secret


@pytest.mark.parametrize("name", ["ml.yaml", "environments/prod.yaml"])
def test_link_out_of_the_project_is_refused_unread(tmp_path, capsys, outside_secret, name):
    project = write_project(tmp_path / "p", {"ml.yaml": BASE, "environments/prod.yaml":
                                             "platform: {development: true}\n"})
    (project / name).unlink()
    (project / name).symlink_to(outside_secret)
    code, err = _compile(project, tmp_path, capsys)
    assert code == 1
    assert _location(err, "MLC017") == name
    assert SECRET not in err and str(outside_secret) not in err


def test_link_to_proc_self_environ_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLC_TEST_LEAK", SECRET)
    project = write_project(tmp_path / "p", {"ml.yaml": BASE})
    (project / "environments").mkdir()
    (project / "environments" / "prod.yaml").symlink_to("/proc/self/environ")
    code, err = _compile(project, tmp_path, capsys)
    assert code == 1 and "error[MLC017]" in err and SECRET not in err


def test_link_inside_the_project_is_read(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": BASE, "shared/prod.yaml":
                                             "platform: {development: true}\n"})
    (project / "environments").mkdir()
    (project / "environments" / "prod.yaml").symlink_to("../shared/prod.yaml")
    assert main(["validate", "-C", str(project)]) == 0, capsys.readouterr().err


def test_dangling_overlay_link_is_an_error_not_a_missing_overlay(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": BASE})
    (project / "environments").mkdir()
    (project / "environments" / "prod.yaml").symlink_to("gone.yaml")
    code, err = _compile(project, tmp_path, capsys)
    assert code == 1 and _location(err, "MLC001") == "environments/prod.yaml"


@pytest.mark.parametrize("name", ["ml.yaml", "environments/prod.yaml"])
def test_fifo_is_refused_without_hanging(tmp_path, capsys, name):
    project = write_project(tmp_path / "p", {"ml.yaml": BASE, "environments/prod.yaml":
                                             "platform: {development: true}\n"})
    (project / name).unlink()
    os.mkfifo(project / name)
    result: list = []
    # a blocking open of a FIFO waits for a writer forever; run it where a hang is visible
    worker = threading.Thread(target=lambda: result.append(_compile(project, tmp_path, capsys)),
                              daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():
        with open(project / name, "wb"):  # release the reader so the thread can end
            pass
        pytest.fail(f"reading a FIFO named {name} hung")
    code, err = result[0]
    assert code == 1 and _location(err, "MLC018") == name and "FIFO" in err


def test_directory_named_like_an_overlay_is_located(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": BASE})
    (project / "environments" / "prod.yaml").mkdir(parents=True)
    code, err = _compile(project, tmp_path, capsys)
    assert code == 1 and _location(err, "MLC018") == "environments/prod.yaml"
    assert "a folder" in err


def test_device_is_refused(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": BASE})
    (project / "environments").mkdir()
    (project / "environments" / "prod.yaml").symlink_to("/dev/zero")
    code, err = _compile(project, tmp_path, capsys)
    # /dev is outside the project: refused as a link before its type is even looked at
    assert code == 1 and "error[MLC017]" in err


def test_read_is_bounded_in_size_and_type(tmp_path):
    with pytest.raises(ReadRefused) as refused:
        read_regular_file(Path("/dev/zero"), 10)
    assert refused.value.kind == "not-regular"
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_FILE_BYTES * 3))
    assert len(read_regular_file(big, MAX_FILE_BYTES)) == MAX_FILE_BYTES + 1
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.perf_counter()
    with pytest.raises(ReadRefused):
        read_regular_file(fifo, 10)
    assert time.perf_counter() - started < 5  # generous: it must merely not block


# ---------------------------------------------------------------------------------------
# Text built to cost time or to fool the terminal


@pytest.mark.parametrize("shape", ["plain", "quoted", "name"])
def test_absurd_line_is_refused_and_fast(tmp_path, capsys, shape):
    value = "x" * 100_000
    text = {"plain": edit("  name: demo\n", f"  name: demo\n  description: {value}\n"),
            "quoted": edit("  name: demo\n", f'  name: demo\n  description: "{value}"\n'),
            "name": edit("  name: demo\n", f"  name: {value}\n")}[shape]
    project = write_project(tmp_path / "p", {"ml.yaml": text})
    started = time.perf_counter()
    code, err = _compile(project, tmp_path, capsys)
    elapsed = time.perf_counter() - started
    line = 4 if shape == "name" else 5
    assert code == 1 and _location(err, "MLC019") == f"ml.yaml:{line}:1"
    assert len(err) < 2000
    assert elapsed < 5, f"{elapsed:.1f}s"


def test_long_line_below_the_cap_is_linear(tmp_path, capsys):
    # every later pass runs regular expressions over each string; one of them used to
    # backtrack quadratically on a long run of letters
    value = "x" * (MAX_LINE_CHARS - 20)
    project = write_project(tmp_path / "p", {"ml.yaml": edit(
        "  name: demo\n", f"  name: demo\n  description: {value}\n")})
    started = time.perf_counter()
    assert main(["validate", "-C", str(project)]) == 0, capsys.readouterr().err
    assert time.perf_counter() - started < 3


BOMBS = {
    "lists": "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
        for i in range(8)),
    "maps": "a: &a {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x}\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} {{"
        + ", ".join(f"k{j}: *{chr(97 + i)}" for j in range(9)) + "}\n" for i in range(8)),
    "wide": "a: &a [" + ", ".join(["x"] * 50) + "]\nb: [" + ", ".join(["*a"] * 5000) + "]\n",
    "nested": "a: &a [[[[[[[[x, x, x, x]]]]]]]]\n" + "b: [" + ", ".join(["*a"] * 3000) + "]\n",
}


@pytest.mark.parametrize("shape", sorted(BOMBS))
def test_alias_bombs_are_refused_in_under_100ms(shape):
    text = BOMBS[shape]
    diags = Diagnostics()
    load_yaml_text(text, "ml.yaml", diags)  # warm up the parser's imports and caches
    best = float("inf")
    for _ in range(3):  # the best of three: a shared CI machine may pause any one run
        diags = Diagnostics()
        started = time.perf_counter()
        assert load_yaml_text(text, "ml.yaml", diags) is None
        best = min(best, time.perf_counter() - started)
    assert [d.code for d in diags] == ["MLC006"]
    assert best < 0.1, f"{shape}: {best * 1000:.0f} ms"


def test_alias_bomb_in_an_overlay(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": BASE,
                                             "environments/prod.yaml": BOMBS["maps"]})
    code, err = _compile(project, tmp_path, capsys)
    assert code == 1 and _location(err, "MLC006").startswith("environments/prod.yaml:")


def test_control_and_bidi_characters_are_rendered_escaped(tmp_path):
    hostile = "ok\x1b[2J\x1b]0;pwned\x07\u202eevil\u2066x\u200f\x9b"
    (tmp_path / "ml.yaml").write_text(f"a: {hostile}\n")
    d = Diagnostic("MLC104", f"invalid name `{hostile}`", Span("ml.yaml", 1, 4, 8),
                   help=hostile, notes=(hostile,))
    text = render_text([d], root=tmp_path)
    for char in "\x1b\x07\u202e\u2066\u200f\x9b":
        assert char not in text
    assert "\\x1b[2J" in text and "\\u202e" in text
    assert printable("plain text, ünïcode") == "plain text, ünïcode"


def test_esc_in_ml_yaml_reaches_the_terminal_escaped(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": edit(
        "  name: demo\n", "  name: demo\n  description: \"a\x1b[31mred\u202e\"\n")})
    code, err = _compile(project, tmp_path, capsys)
    assert code == 1 and "error[MLC002]" in err
    assert "\x1b" not in err and "\u202e" not in err and "\\x1b" in err


def test_syntax_error_quotes_only_the_token(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": BASE, "environments/prod.yaml":
                                             f"hardware: {{cpu-small: [{SECRET}\n"})
    code, err = _compile(project, tmp_path, capsys)
    assert code == 1 and "error[MLC002]" in err
    assert "hardware" not in err.split("error[MLC002]")[1]


# ---------------------------------------------------------------------------------------
# The output tree


def test_deeply_nested_index_is_a_located_error(tmp_path, capsys):
    project = write_project(tmp_path / "p", {"ml.yaml": BASE})
    out = tmp_path / "out"
    (out / "default").mkdir(parents=True)
    index = out / "default" / ".mlc-index.json"
    index.write_text("[" * 200_000 + "]" * 200_000)
    for command in ("compile", "plan", "apply"):
        code = main([command, "-C", str(project), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 1, (command, err)
        assert "Traceback" not in err and "RecursionError" not in err
        assert ".mlc-index.json" in err and ("MLC903" in err or "MLC910" in err), err
