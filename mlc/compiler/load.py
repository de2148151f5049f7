"""Load: the only module that reads user files, turning YAML text into plain values plus a
source map (the span of every node, keyed by its field path).

The work is split by what each part holds:

* reading.py: bounded reads of regular files inside the project (no link out, no FIFO);
* here: the entry points, the file-level bounds (size, line length, encoding) and the
  per-process cache of composed files;
* yaml_compose.py: our own composer over parse events, which counts depth, nodes and alias
  expansion as it goes, and refuses duplicate and merge keys, non-string keys, unknown tags
  and non-finite numbers at the offending token;
* yaml_scalars.py: YAML 1.2 core-schema scalars as plain Python values;
* yaml_errors.py: parser errors as located diagnostics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlc.compiler.diagnostics import Diagnostics, FieldPath, Span
from mlc.compiler.reading import ReadRefused, read_project_file, read_regular_file
from mlc.compiler.yaml_compose import (
    INT_TOO_LARGE,
    MAX_ALIASED_NODES,
    MAX_DEPTH,
    MAX_NODES,
    NOT_FINITE,
    READS_DIFFERENTLY_IN_YAML_11,
    Composer,
    Stop,
    TooDeep,
    copy_value,
    events,
    libyaml_events,
    libyaml_kinds,
)
from mlc.compiler.yaml_errors import mark_span, syntax_error
from mlc.compiler.yaml_scalars import type_name

__all__ = ["INT_TOO_LARGE", "MAX_ALIASED_NODES", "MAX_DEPTH", "MAX_FILE_BYTES",
           "MAX_LINE_CHARS", "MAX_NODES", "NOT_FINITE", "READS_DIFFERENTLY_IN_YAML_11",
           "Document", "load_yaml_file", "load_yaml_text"]

# A bound against generated data, not the scale ceiling: a platform project of 1,000 models
# (each with a source, features, an endpoint and a drift check) is about 1.3-2 MB. The costly
# shapes of hostile input are stopped by the depth, alias, node and line bounds.
MAX_FILE_BYTES = 4_000_000
# No ml.yaml line needs this much; a longer one is generated data or an attack on the
# regular expressions that later passes run over every string.
MAX_LINE_CHARS = 10_000

LINK_OUTSIDE = "MLC017"
NOT_REGULAR = "MLC018"
LINE_TOO_LONG = "MLC019"


@dataclass(frozen=True)
class Document:
    """A loaded YAML file: plain values plus where each one was written."""

    file: str
    data: Any
    spans: Mapping[FieldPath, Span] = field(default_factory=dict)
    key_spans: Mapping[FieldPath, Span] = field(default_factory=dict)
    raw: bytes = field(default=b"", repr=False, compare=False)  # the bytes read, for hashing
    # the text of every file the document was loaded from, by name: for checks that read
    # comments, which the data does not keep (literal_secrets.py's allowlist pragma)
    texts: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def span_for(self, path: FieldPath) -> Span | None:
        """The value span of the deepest existing prefix of `path`, so that an error about a
        missing child points at its parent."""
        path = tuple(path)
        for end in range(len(path), -1, -1):
            span = self.spans.get(path[:end])
            if span is not None:
                return span
        return None


def load_yaml_file(path: Path, file: str, diags: Diagnostics, *, allow_empty: bool = False,
                   root: Path | None = None) -> Document | None:
    """Read and load one file; `file` is the name diagnostics show (relative to the project).

    With `root`, `file` is read as `root/file` and refused unless it is a regular file inside
    `root` (see reading.py); without, `path` is read, still only if it is a regular file.
    """
    try:
        # one byte past the cap, so an oversized file is refused without reading it all
        if root is not None:
            raw = read_project_file(root, file, MAX_FILE_BYTES)
        else:
            raw = read_regular_file(path, MAX_FILE_BYTES)
    except ReadRefused as err:
        _refused(file, err, diags)
        return None
    if len(raw) > MAX_FILE_BYTES:
        _too_large(file, diags)
        return None
    key = (file, allow_empty, raw)
    if key in _loaded:
        return _fresh_copy(_loaded[key])
    before = len(diags.items)
    document = _load_bytes(raw, file, diags, allow_empty)
    if document is not None and len(diags.items) == before:
        # only loads that reported nothing: a cache hit has no diagnostics to repeat
        while len(_loaded) >= _LOADED_CAP:
            del _loaded[next(iter(_loaded))]
        _loaded[key] = document
        return _fresh_copy(document)
    return document


# ml.yaml is read once per environment; the same bytes are composed once per process and each
# environment gets its own copy of the values (later passes may change them), sharing spans.
_LOADED_CAP = 8
_loaded: dict[tuple[str, bool, bytes], Document] = {}


def _fresh_copy(document: Document) -> Document:
    return replace(document, data=copy_value(document.data), spans=dict(document.spans),
                   key_spans=dict(document.key_spans), texts=dict(document.texts))


def _load_bytes(raw: bytes, file: str, diags: Diagnostics, allow_empty: bool
                ) -> Document | None:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        column = len(raw[line_start:err.start].decode("utf-8", "replace")) + 1
        diags.error("MLC001", f"{file} is not valid UTF-8 text: byte 0x{raw[err.start]:02x} "
                    f"at line {line}", span=Span(file, line, column, column + 1),
                    help="save the file with UTF-8 encoding", excerpt=False)
        return None
    document = load_yaml_text(text, file, diags, allow_empty=allow_empty)
    return replace(document, raw=raw) if document is not None else None


def _refused(file: str, err: ReadRefused, diags: Diagnostics) -> None:
    if err.kind == "missing":
        diags.error("MLC001", f"file not found: {file}", span=Span(file))
    elif err.kind == "outside":
        diags.error(LINK_OUTSIDE, f"{file} is a link to a file outside the project folder; "
                    "mlc does not read it", span=Span(file),
                    help="replace the link with the file itself, or link to a file inside "
                    "the project folder")
    elif err.kind == "not-regular":
        diags.error(NOT_REGULAR, f"{file} is {err.detail}, not a regular file", span=Span(file),
                    help=f"{file} must be a plain text file; move whatever is there away")
    else:
        diags.error("MLC001", f"cannot read {file}: {err.detail}", span=Span(file))


def load_yaml_text(text: str, file: str, diags: Diagnostics, *, allow_empty: bool = False
                   ) -> Document | None:
    """Load YAML text; returns None (after adding errors to `diags`) if it cannot be used."""
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        _too_large(file, diags)
        return None
    text = text.removeprefix("\ufeff")
    fast = _load_with_libyaml(text, file, allow_empty)
    if fast is not None:
        return fast
    from ruamel.yaml.error import YAMLError

    composer = Composer(file, diags)
    try:
        root = composer.compose(events(text))
    except Stop:
        return None
    except TooDeep as err:
        composer.too_deep(mark_span(file, err.args[0]))
        return None
    except YAMLError as err:
        syntax_error(err, text, file, diags)
        return None
    except RecursionError:
        composer.too_deep(Span(file))
        return None
    except Exception as err:  # noqa: BLE001 - third-party parser; the contract is "never raise"
        diags.error("MLC002", f"internal error in the YAML parser: {type(err).__name__}",
                    span=Span(file))
        return None
    # after composing, so that what the parser reports first (nesting, aliases) keeps its
    # code; parsing is linear, it is later passes that must never see a line this long
    if not composer.ok or not _lines_fit(text, file, diags):
        return None
    return _document(composer, root, text, file, diags, allow_empty)


# Text that libyaml (YAML 1.1) and ruamel (YAML 1.2) read alike: printable characters and
# `\n` only (no tab, no `\r`, none of YAML 1.1's extra line breaks U+0085, U+2028, U+2029, no
# byte-order mark inside) and no `%` directive.
_PLAIN_TEXT = re.compile("[\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                         "\U00010000-\U0010ffff]*")
_DIRECTIVE = re.compile(r"^%", re.MULTILINE)


def _load_with_libyaml(text: str, file: str, allow_empty: bool) -> Document | None:
    """The document composed from libyaml's events, when that is sure to be the document the
    ruamel path gives: plain text, and a composition with no diagnostic (not even a warning),
    no tag, no parser error, to a non-empty mapping. None sends the text to the ruamel path,
    which reports whatever there is to report, exactly as it always did."""
    kinds = libyaml_kinds()
    if kinds is None or not _PLAIN_TEXT.fullmatch(text) or _DIRECTIVE.search(text):
        return None
    local = Diagnostics()
    composer = Composer(file, local, kinds)
    try:
        root = composer.compose(libyaml_events(text))
    except Exception:  # noqa: BLE001 - a parser error, a bound, a tag: ruamel's to report
        return None
    if local.items or not composer.ok or not isinstance(root, dict) or not root:
        return None
    if not _lines_fit(text, file, local):
        return None
    return _document(composer, root, text, file, local, allow_empty)


def _document(composer: Composer, root: Any, text: str, file: str, diags: Diagnostics,
              allow_empty: bool) -> Document | None:
    spans = {path: span for is_key, path, span in composer.entries if not is_key}
    if not isinstance(root, dict):
        if root is None and allow_empty:  # an overlay with nothing to override
            return Document(file, {}, {(): Span(file, 1, 1, 2)}, {}, texts={file: text})
        if root is None:
            diags.error("MLC007", f"{file} is empty", span=Span(file, 1, 1, 2),
                        help="add `key: value` lines, or delete the file")
        else:
            diags.error("MLC007", f"the top level of {file} must be a mapping of keys to values, "
                        f"found {type_name(root)}", span=spans.get(()) or Span(file))
        return None
    key_spans = {path: span for is_key, path, span in composer.entries if is_key}
    return Document(file, root, spans, key_spans, texts={file: text})


def _lines_fit(text: str, file: str, diags: Diagnostics) -> bool:
    start, number = 0, 1
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if end - start > MAX_LINE_CHARS:
            diags.error(LINE_TOO_LONG, f"line {number} of {file} is {end - start} characters "
                        f"long; mlc reads lines of at most {MAX_LINE_CHARS}",
                        span=Span(file, number, 1, 2), excerpt=False,
                        help="break the value over several lines (a `>-` folded block), or "
                        "move the data out of the configuration")
            return False
        start, number = end + 1, number + 1
    return True


def _too_large(file: str, diags: Diagnostics) -> None:
    diags.error("MLC004", f"{file} is larger than {MAX_FILE_BYTES} bytes", span=Span(file),
                help="split the project, or move data out of the configuration")

