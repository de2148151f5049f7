"""Located YAML errors: the parser's marks and positions as spans, and a syntax error as one
diagnostic at the offending token. The excerpt is never quoted (`excerpt=False`): the text of
a file that did not parse may be anything, and CI logs show it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlc.compiler.diagnostics import Diagnostics, Span

if TYPE_CHECKING:
    from ruamel.yaml.error import YAMLError

__all__ = ["mark_span", "position_span", "syntax_error"]


def syntax_error(err: YAMLError, text: str, file: str, diags: Diagnostics) -> None:
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.reader import ReaderError

    if isinstance(err, ReaderError):
        char = err.character if isinstance(err.character, int) else 0
        diags.error("MLC002", f"YAML syntax error: character U+{char:04X} is not allowed in "
                    "YAML text", span=position_span(text, file, err.position),
                    help="remove the control character", excerpt=False)
        return
    if not isinstance(err, MarkedYAMLError):
        diags.error("MLC002", f"YAML syntax error: {err}", span=Span(file), excerpt=False)
        return
    mark = err.problem_mark or err.context_mark
    problem = (err.problem or err.context or "invalid YAML").strip()
    notes = []
    context = err.context_mark
    if err.context and context is not None and (mark is None or (context.line, context.column)
                                                != (mark.line, mark.column)):
        notes.append(f"{err.context} at line {err.context_mark.line + 1}, "
                     f"column {err.context_mark.column + 1}")
    help_text = None
    if "'\\t'" in problem:
        help_text = "YAML indentation must use spaces, not tabs"
    span = mark_span(file, mark) if mark is not None else Span(file)
    diags.error("MLC002", f"YAML syntax error: {problem}", span=span, notes=notes, help=help_text,
                excerpt=False)


def mark_span(file: str, mark: Any, end: Any = None) -> Span:
    line, column = mark.line + 1, mark.column + 1
    if end is not None and end.line == mark.line and end.column > mark.column:
        return Span(file, line, column, end.column + 1)
    return Span(file, line, column, column + 1)


def position_span(text: str, file: str, position: int) -> Span:
    position = max(0, min(position, len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return Span(file, line, column, column + 1)

