"""GitHub Actions workflow commands: `::error file=ml.yaml,line=3,col=5,title=MLC101::...`,
which the runner turns into annotations on the pull request's diff at that line."""

from __future__ import annotations

from collections.abc import Iterable

from .findings import ERROR, NOTE, Finding

_COMMAND = {ERROR: "error", "warning": "warning", NOTE: "notice"}


def escape_data(text: str) -> str:
    """The message: GitHub reads `%`, CR and LF as escapes and line ends."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A property value, where `:` ends the properties and `,` separates them as well."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(f: Finding) -> str:
    props = []
    if f.file:
        props.append(f"file={escape_property(f.file)}")
        if f.line:
            props.append(f"line={f.line}")
            if f.column:
                props.append(f"col={f.column}")
                # GitHub's end column is the last one marked; a span's ends after it
                if f.end_column - 1 > f.column:
                    props.append(f"endColumn={f.end_column - 1}")
    props.append(f"title={escape_property(f.code)}")
    body = "\n".join([f.message, *f.details])
    return f"::{_COMMAND[f.level]} {','.join(props)}::{escape_data(body)}"


def render(findings: Iterable[Finding], summary: Iterable[str] = ()) -> str:
    lines = [annotation(f) for f in findings]
    lines += [escape_data(s) for s in summary]  # plain lines: never read as a command
    return "".join(line + "\n" for line in lines)
