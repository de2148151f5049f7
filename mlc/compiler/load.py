"""Load: the only module that reads user files, turning YAML text into plain values plus a
source map (the span of every node, keyed by its field path).

We compose the document ourselves from ruamel.yaml's parse events instead of using a
ruamel loader, for four reasons:

* the parser and scanner are iterative, so with our own iterative composer no input, however
  deeply nested, can raise RecursionError;
* alias expansion is counted as it happens, so an alias bomb stops at `MAX_NODES` before it
  costs memory or time;
* scalars follow the YAML 1.2 core schema exactly (`no` stays a string, `1e-4` is a float,
  dates stay strings) and come out as plain Python values, never ruamel wrapper types;
* duplicate keys, merge keys (`<<`), non-string keys and unknown tags become diagnostics with
  the position of the offending token, all of them in one pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    DocumentStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    SequenceStartEvent,
)
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scanner import Scanner, ScannerError

from mlc.compiler.diagnostics import Diagnostics, FieldPath, Span
from mlc.compiler.reading import ReadRefused, read_project_file, read_regular_file
from mlc.compiler.yaml_versions import difference

__all__ = ["MAX_ALIASED_NODES", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_LINE_CHARS", "MAX_NODES",
           "Document", "load_yaml_file", "load_yaml_text"]

# A bound against generated data, not the scale ceiling: a platform project of 1,000 models
# (each with a source, features, an endpoint and a drift check) is about 1.3-2 MB. The costly
# shapes of hostile input are stopped by the depth, alias, node and line bounds.
MAX_FILE_BYTES = 4_000_000
MAX_DEPTH = 64
MAX_NODES = 500_000  # such a project is ~90 values per model
# Values copied by aliases: real projects reuse a few small blocks, a bomb needs many copies.
# Composing 5,000 copied values costs well under 100 ms even for deeply nested copies.
MAX_ALIASED_NODES = 5_000
# No ml.yaml line needs this much; a longer one is generated data or an attack on the
# regular expressions that later passes run over every string.
MAX_LINE_CHARS = 10_000
# Numbers end up in Kubernetes int32/int64 fields, Python and PromQL: anything wider than a
# signed 64-bit integer cannot be meant.
INT_RANGE = (-(2**63), 2**63 - 1)

LINK_OUTSIDE = "MLC017"
NOT_REGULAR = "MLC018"
LINE_TOO_LONG = "MLC019"
NOT_FINITE = "MLC020"
INT_TOO_LARGE = "MLC021"
READS_DIFFERENTLY_IN_YAML_11 = "MLC385"


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


# ---------------------------------------------------------------------------------------
# Entry points


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
    return replace(document, data=_copy(document.data), spans=dict(document.spans),
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
    composer = _Composer(file, diags)
    try:
        root = composer.compose(_events(text))
    except _Stop:
        return None
    except _TooDeep as err:
        composer.too_deep(_mark_span(file, err.args[0]))
        return None
    except YAMLError as err:
        _syntax_error(err, text, file, diags)
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
    spans = {path: span for is_key, path, span in composer.entries if not is_key}
    if not isinstance(root, dict):
        if root is None and allow_empty:  # an overlay with nothing to override
            return Document(file, {}, {(): Span(file, 1, 1, 2)}, {}, texts={file: text})
        if root is None:
            diags.error("MLC007", f"{file} is empty", span=Span(file, 1, 1, 2),
                        help="add `key: value` lines, or delete the file")
        else:
            diags.error("MLC007", f"the top level of {file} must be a mapping of keys to values, "
                        f"found {_type_name(root)}", span=spans.get(()) or Span(file))
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


def _syntax_error(err: YAMLError, text: str, file: str, diags: Diagnostics) -> None:
    if isinstance(err, ReaderError):
        char = err.character if isinstance(err.character, int) else 0
        diags.error("MLC002", f"YAML syntax error: character U+{char:04X} is not allowed in "
                    "YAML text", span=_position_span(text, file, err.position),
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
    span = _mark_span(file, mark) if mark is not None else Span(file)
    diags.error("MLC002", f"YAML syntax error: {problem}", span=span, notes=notes, help=help_text,
                excerpt=False)


# ---------------------------------------------------------------------------------------
# Parsing


class _TooDeep(Exception):
    """Raised by the scanner with the mark of the bracket that went one level too deep."""


class _Stop(Exception):
    """A cap was hit; the diagnostic has been recorded and composing cannot go on."""


class _GuardedScanner(Scanner):
    # ruamel's scanner keeps one pending "simple key" per open flow level and rescans them
    # all for every token, so `[[[[...` costs O(levels^2) before the parser sees anything;
    # refusing at the scanner keeps a 1 MB bracket bomb as cheap as a small one.
    def fetch_more_tokens(self) -> Any:
        super().fetch_more_tokens()
        if self.flow_level > MAX_DEPTH:
            raise _TooDeep(self.tokens[-1].start_mark)

    def scan_yaml_directive_value(self, start_mark: Any) -> Any:
        # ruamel asserts on `%YAML 1.3`; make it an ordinary syntax error
        version = super().scan_yaml_directive_value(start_mark)
        if version not in ((1, 1), (1, 2)):
            raise ScannerError(None, None, f"unsupported YAML version {version[0]}.{version[1]}"
                               " (mlc reads YAML 1.2)", start_mark)
        return version


def _events(text: str) -> Iterator[Any]:
    yaml = YAML(typ="safe", pure=True)
    yaml.Scanner = _GuardedScanner
    return yaml.parse(text)


def _mark_span(file: str, mark: Any, end: Any = None) -> Span:
    line, column = mark.line + 1, mark.column + 1
    if end is not None and end.line == mark.line and end.column > mark.column:
        return Span(file, line, column, end.column + 1)
    return Span(file, line, column, column + 1)


def _position_span(text: str, file: str, position: int) -> Span:
    position = max(0, min(position, len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return Span(file, line, column, column + 1)


# YAML 1.2.2 core schema, section 10.3.2; `[0-9]` rather than `\d`, which matches any digit
_NULL = re.compile(r"null|Null|NULL|~|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")

_CORE = "tag:yaml.org,2002:"
_TYPED_TAGS = {f"{_CORE}{t}": t for t in ("int", "float", "bool", "null")}
_EXPECTED = {"int": (int,), "float": (int, float), "bool": (bool,), "null": (type(None),)}


def _resolve_plain(text: str) -> Any:
    """A plain (unquoted, untagged) scalar under the YAML 1.2 core schema."""
    if _NULL.fullmatch(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT10.fullmatch(text):
        return int(text)  # may raise ValueError past Python's digit limit; caller reports it
    if _INT8.fullmatch(text) or _INT16.fullmatch(text):
        return int(text, 0)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return float("-inf") if text.startswith("-") else float("inf")
    if _NAN.fullmatch(text):
        return float("nan")
    return text


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


def _type_name(value: Any) -> str:
    kinds = ((type(None), "null"), (bool, "a boolean"), (dict, "a mapping"), (list, "a list"),
             ((int, float), "a number"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "a string")


# ---------------------------------------------------------------------------------------
# Composing


_SKIP = object()  # a key that was refused; its value is parsed but dropped
_OPEN = object()  # an anchor whose node is still being composed


@dataclass
class _Frame:
    is_map: bool
    container: dict | list | None  # None: inside a refused key, nothing is kept
    path: FieldPath
    anchor: str | None
    first_entry: int
    first_node: int
    key: Any = None
    expect_key: bool = True
    count: int = 0
    key_lines: dict[str, int] = field(default_factory=dict)


@dataclass
class _Anchor:
    value: Any
    path: FieldPath
    entries: tuple[int, int]  # slice of _Composer.entries recorded for this node
    nodes: int


class _Composer:
    def __init__(self, file: str, diags: Diagnostics):
        self.file, self.diags = file, diags
        self.ok = True
        self.nodes = 0
        self.aliased = 0
        # (is_key, path, span) in document order, so an anchored subtree is one slice
        self.entries: list[tuple[bool, FieldPath, Span]] = []
        self.anchors: dict[str, _Anchor | object] = {}

    def error(self, code: str, message: str, span: Span, help: str | None = None,
              notes: tuple[str, ...] = ()) -> None:
        self.ok = False
        self.diags.error(code, message, span=span, help=help, notes=notes)

    def too_deep(self, span: Span) -> None:
        self.error("MLC005", f"nesting is deeper than {MAX_DEPTH} levels", span,
                   help="flatten the structure; no mlc setting needs this much nesting")

    def compose(self, events: Iterator[Any]) -> Any:
        stack: list[_Frame] = []
        root: Any = None
        documents = 0
        for event in events:
            if isinstance(event, DocumentStartEvent):
                documents += 1
                if documents > 1:
                    self.error("MLC007", f"{self.file} holds more than one YAML document",
                               _mark_span(self.file, event.start_mark),
                               help="remove the `---` separator; one file is one document")
                    raise _Stop
            elif isinstance(event, CollectionEndEvent):
                frame = stack.pop()
                self._remember(frame.anchor, frame.container, frame.path, frame.first_entry,
                               self.nodes - frame.first_node)
            elif isinstance(event, NodeEvent):
                parent = stack[-1] if stack else None
                if parent is not None and parent.is_map and parent.expect_key:
                    self._key(parent, event, stack)
                elif parent is None:
                    root = self._node(parent, event, stack)
                else:
                    self._node(parent, event, stack)
        return root

    # -- nodes -----------------------------------------------------------------------------

    def _node(self, parent: _Frame | None, event: Any, stack: list[_Frame]) -> Any:
        if parent is None:
            path, keep = (), True
        elif parent.container is None or parent.key is _SKIP:
            path, keep = parent.path, False
        else:
            path, keep = parent.path + (parent.key if parent.is_map else parent.count,), True
        span = _mark_span(self.file, event.start_mark, event.end_mark)
        if isinstance(event, AliasEvent):
            value = self._alias(event, span, path, keep)
        elif isinstance(event, ScalarEvent):
            self._count(1, span)
            value = self._scalar(event, span)
            if keep:
                self.entries.append((False, path, span))
            self._remember(event.anchor, value, path, len(self.entries) - 1, 1)
        else:
            if len(stack) >= MAX_DEPTH:
                self.too_deep(span)
                raise _Stop
            self._count(1, span)
            is_map = isinstance(event, MappingStartEvent)
            self._check_tag(event.tag, "map" if is_map else "seq", span)
            value = ({} if is_map else []) if keep else None
            if keep:
                self.entries.append((False, path, span))
            if event.anchor:
                self.anchors[event.anchor] = _OPEN
            stack.append(_Frame(is_map, value, path, event.anchor, len(self.entries) - 1,
                                self.nodes - 1))
        if parent is not None:
            if keep and parent.is_map:
                parent.container[parent.key] = value
            elif keep:
                parent.container.append(value)
            parent.count += 1
            parent.key, parent.expect_key = None, True
        return value

    def _count(self, nodes: int, span: Span) -> None:
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            self.error("MLC006", f"{self.file} expands to more than {MAX_NODES} values",
                       span, help="aliases (`*name`) repeat whole subtrees; this many copies "
                       "is almost certainly an alias bomb or generated data")
            raise _Stop

    def _remember(self, name: str | None, value: Any, path: FieldPath, first: int,
                  nodes: int) -> None:
        # entries[first] is the node's own span (replaced by the alias span when reused);
        # a node inside a refused key records no entries, so its slice is empty
        if name:
            self.anchors[name] = _Anchor(value, path, (first, len(self.entries)), nodes)

    def _alias(self, event: Any, span: Span, path: FieldPath, keep: bool) -> Any:
        anchor = self.anchors.get(event.anchor)
        if anchor is _OPEN:
            self.error("MLC006", f"alias `*{event.anchor}` refers to a node that contains it",
                       span, help="a recursive alias would expand forever")
            raise _Stop
        if not isinstance(anchor, _Anchor):
            self.error("MLC002", f"YAML syntax error: alias `*{event.anchor}` has no anchor "
                       f"`&{event.anchor}` before it", span)
            return None
        self._count(anchor.nodes, span)
        self.aliased += anchor.nodes
        if self.aliased > MAX_ALIASED_NODES:
            self.error("MLC006", f"aliases in {self.file} copy more than {MAX_ALIASED_NODES} "
                       "values", span, help="aliases (`*name`) repeat whole subtrees; this many "
                       "copies is almost certainly an alias bomb: write the values out")
            raise _Stop
        if not keep:
            return anchor.value
        # copies of the anchored node's spans, re-rooted here: an error inside an aliased
        # value points at the text that defines it
        self.entries.append((False, path, span))
        depth = len(anchor.path)
        for is_key, old, old_span in self.entries[anchor.entries[0] + 1:anchor.entries[1]]:
            self.entries.append((is_key, path + old[depth:], old_span))
        return _copy(anchor.value)

    def _scalar(self, event: Any, span: Span) -> Any:
        tag = event.tag
        if tag is None and event.style is None:
            try:
                resolved = _resolve_plain(event.value)
            except ValueError:
                self.error(INT_TOO_LARGE, "integer has too many digits", span,
                           help="quote it if it is meant as text")
                return None
            value = self._number(resolved, event.value, span)
            if value is resolved:  # not refused as a number already
                self._same_in_yaml_11(event.value, value, span)
            return value
        if tag in (None, "!", f"{_CORE}str"):  # quoted, or tagged as a string
            return event.value
        kind = _TYPED_TAGS.get(tag)
        if kind is None:
            self._check_tag(tag, "scalar", span)
            return event.value
        try:
            value = _resolve_plain(event.value)
        except ValueError:
            value = event.value
        if not isinstance(value, _EXPECTED[kind]) or (kind != "bool" and isinstance(value, bool)):
            self.error("MLC009", f"`{event.value}` is not a valid `!!{kind}` value", span,
                       help=f"remove the `!!{kind}` tag or fix the value")
            return None
        return self._number(float(value) if kind == "float" else value, event.value, span)

    def _same_in_yaml_11(self, text: str, value: Any, span: Span) -> None:
        """Editors, linters and scripts that read ml.yaml with a YAML 1.1 library must see
        the value mlc sees."""
        found = difference(text, value)
        if found is not None:
            self.diags.warning(READS_DIFFERENTLY_IN_YAML_11, found.message(), span=span,
                               help=found.help())

    def _number(self, value: Any, text: str, span: Span) -> Any:
        """Infinity, NaN and integers beyond 64 bits are refused here, once for every field:
        no setting means them, and NaN compares false with everything, so a `min: .nan`
        gate would always pass."""
        shown = text if len(text) <= 40 else text[:37] + "..."
        if isinstance(value, float) and not math.isfinite(value):
            what = "not a number" if math.isnan(value) else "infinite"
            self.error(NOT_FINITE, f"`{shown}` is {what}; mlc accepts finite numbers only", span,
                       help="write an ordinary number such as `0.5` or `0.0001`, or quote it "
                       "if it is meant as text")
            return None
        if isinstance(value, int) and not isinstance(value, bool) and not (
                INT_RANGE[0] <= value <= INT_RANGE[1]):
            self.error(INT_TOO_LARGE, f"`{shown}` does not fit in a signed 64-bit integer",
                       span, help="use a smaller number, or quote it if it is meant as text")
            return None
        return value

    def _check_tag(self, tag: str | None, kind: str, span: Span) -> None:
        if tag not in (None, "!", f"{_CORE}{kind}"):
            self.error("MLC009", f"unsupported YAML tag `{_show_tag(tag)}`", span,
                       help="mlc reads plain YAML values only (strings, numbers, booleans, "
                       "null, lists, mappings); remove the tag")

    # -- keys ------------------------------------------------------------------------------

    def _key(self, parent: _Frame, event: Any, stack: list[_Frame]) -> None:
        span = _mark_span(self.file, event.start_mark, event.end_mark)
        parent.key, parent.expect_key = _SKIP, False
        if isinstance(event, (MappingStartEvent, SequenceStartEvent)):
            if parent.container is not None:
                kind = "mapping" if isinstance(event, MappingStartEvent) else "list"
                self.error("MLC008", f"mapping keys must be strings, found a {kind}", span,
                           help="use a plain word as the key")
            self._node(parent, event, stack)  # composed, so its events balance, then dropped
            parent.key, parent.expect_key = _SKIP, False
            return
        reported = len(self.diags.errors)  # a warning (MLC385) keeps the key
        if isinstance(event, AliasEvent):
            key, shown, tag = self._alias(event, span, (), False), f"*{event.anchor}", None
        else:
            self._count(1, span)
            key, shown, tag = self._scalar(event, span), event.value, event.tag
            if event.value == "<<" and event.style is None and tag is None:
                tag = f"{_CORE}merge"
        if parent.container is None or len(self.diags.errors) > reported:
            return
        if tag == f"{_CORE}merge":
            self.error("MLC010", "YAML merge keys (`<<`) are not supported", span,
                       help="write the keys out, or put per-environment differences in "
                       "environments/<env>.yaml overlays")
        elif not isinstance(key, str):
            self.error("MLC008", f"mapping keys must be strings, found {_type_name(key)} "
                       f"`{shown}`", span, help=f'quote the key: "{shown}":')
        elif key in parent.key_lines:
            self.error("MLC003", f"duplicate key `{key}`", span,
                       notes=(f"`{key}` is first defined at line {parent.key_lines[key]}",),
                       help="remove one of them; YAML keeps only one value per key")
        else:
            parent.key_lines[key] = span.line
            parent.key = key
            self.entries.append((True, parent.path + (key,), span))
            if isinstance(event, ScalarEvent):
                self._remember(event.anchor, key, parent.path + (key,), len(self.entries), 1)


def _copy(value: Any) -> Any:
    # aliased subtrees are copied so no later pass can change two places through one object;
    # the cost is bounded by MAX_NODES, which was charged before copying
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
