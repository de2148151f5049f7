"""Composing a YAML document from parse events, with every bound counted as it is reached
rather than after the fact:

* the parser and scanner are iterative, and so is this composer, so no input, however deeply
  nested, can raise RecursionError; nesting past `MAX_DEPTH` stops at the scanner (flow
  brackets) or here (blocks);
* alias expansion is counted as it happens, so an alias bomb stops at `MAX_ALIASED_NODES`
  (or the whole document at `MAX_NODES`) before it costs memory or time;
* scalars follow the YAML 1.2 core schema (yaml_scalars.py), non-finite floats and integers
  past 64 bits are refused once for every field;
* duplicate keys, merge keys (`<<`), non-string keys and unknown tags become diagnostics with
  the position of the offending token, all of them in one pass.

The events come from ruamel.yaml's pure-Python parser (`events`), whose errors and marks every
diagnostic is written against, or from libyaml through PyYAML (`libyaml_events`), which
parses ten times faster: load.py takes the libyaml composition only for plain text that it
composed with no diagnostic at all, and composes anything else again with ruamel.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mlc.compiler.diagnostics import Diagnostics, FieldPath, Span
from mlc.compiler.yaml_errors import mark_span
from mlc.compiler.yaml_scalars import CORE, EXPECTED, TYPED_TAGS, resolve_plain, show_tag, type_name
from mlc.compiler.yaml_versions import difference

__all__ = ["INT_RANGE", "MAX_ALIASED_NODES", "MAX_DEPTH", "MAX_NODES", "Composer", "EventKinds",
           "Stop", "TooDeep", "Unusual", "copy_value", "events", "libyaml_events"]

# The costly shapes of hostile input stop at these bounds (load.py bounds the file's size).
MAX_DEPTH = 64
# a platform project of 1,000 models is ~90 values per model
MAX_NODES = 500_000
# Values copied by aliases: real projects reuse a few small blocks, a bomb needs many copies.
# Composing 5,000 copied values costs well under 100 ms even for deeply nested copies.
MAX_ALIASED_NODES = 5_000
# Numbers end up in Kubernetes int32/int64 fields, Python and PromQL: anything wider than a
# signed 64-bit integer cannot be meant.
INT_RANGE = (-(2**63), 2**63 - 1)

NOT_FINITE = "MLC020"
INT_TOO_LARGE = "MLC021"
READS_DIFFERENTLY_IN_YAML_11 = "MLC385"


class TooDeep(Exception):
    """Raised by the scanner with the mark of the bracket that went one level too deep."""


class Stop(Exception):
    """A cap was hit; the diagnostic has been recorded and composing cannot go on."""


class Unusual(Exception):
    """libyaml_events met something load.py leaves to ruamel (a tag, an empty value)."""


@dataclass(frozen=True)
class EventKinds:
    """The event classes of one parser library (ruamel.yaml's or PyYAML's, alike in shape)."""

    document_start: type
    collection_end: type
    node: type
    mapping_start: type
    sequence_start: type
    alias: type
    scalar: type

    @staticmethod
    def of(module: Any) -> EventKinds:
        return EventKinds(module.DocumentStartEvent, module.CollectionEndEvent, module.NodeEvent,
                          module.MappingStartEvent, module.SequenceStartEvent,
                          module.AliasEvent, module.ScalarEvent)


@cache
def ruamel_kinds() -> EventKinds:
    from ruamel.yaml import events as ruamel_events

    return EventKinds.of(ruamel_events)


@cache
def _guarded_scanner() -> type:
    from ruamel.yaml.scanner import Scanner, ScannerError

    class GuardedScanner(Scanner):
        # ruamel's scanner keeps one pending "simple key" per open flow level and rescans
        # them all for every token, so `[[[[...` costs O(levels^2) before the parser sees
        # anything; refusing at the scanner keeps a 1 MB bracket bomb as cheap as a small one.
        def fetch_more_tokens(self) -> Any:
            super().fetch_more_tokens()
            if self.flow_level > MAX_DEPTH:
                raise TooDeep(self.tokens[-1].start_mark)

        def scan_yaml_directive_value(self, start_mark: Any) -> Any:
            # ruamel asserts on `%YAML 1.3`; make it an ordinary syntax error
            version = super().scan_yaml_directive_value(start_mark)
            if version not in ((1, 1), (1, 2)):
                raise ScannerError(None, None, "unsupported YAML version "
                                   f"{version[0]}.{version[1]} (mlc reads YAML 1.2)", start_mark)
            return version

    return GuardedScanner


def events(text: str) -> Iterator[Any]:
    """ruamel.yaml's events (pure Python, YAML 1.2): the parser every diagnostic is about."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.Scanner = _guarded_scanner()
    return yaml.parse(text)


@cache
def libyaml_kinds() -> EventKinds | None:
    """PyYAML's event classes, when its libyaml binding is installed; None otherwise."""
    try:
        from yaml import events as pyyaml_events
        from yaml.cyaml import CParser  # noqa: F401 - only whether it is there
    except ImportError:
        return None
    return EventKinds.of(pyyaml_events)


def libyaml_events(text: str) -> Iterator[Any]:
    """libyaml's events for `text`, shaped as ruamel's; raises Unusual at what they might
    place or read apart (a tag, an empty value), and PyYAML's errors."""
    from yaml.cyaml import CParser

    parser = CParser(text)
    try:
        while parser.check_event():
            event = parser.get_event()
            if getattr(event, "tag", None) is not None:
                raise Unusual
            if getattr(event, "style", None) == "":
                if event.value == "":  # an empty value: the two libraries place it apart
                    raise Unusual
                event.style = None  # a plain scalar, as ruamel says it
            yield event
    finally:
        parser.dispose()



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
    entries: tuple[int, int]  # slice of Composer.entries recorded for this node
    nodes: int


class Composer:
    def __init__(self, file: str, diags: Diagnostics, kinds: EventKinds | None = None):
        self.file, self.diags = file, diags
        self.kinds = kinds or ruamel_kinds()  # the classes of the events compose() is given
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
        kinds = self.kinds
        for event in events:
            if isinstance(event, kinds.document_start):
                documents += 1
                if documents > 1:
                    self.error("MLC007", f"{self.file} holds more than one YAML document",
                               mark_span(self.file, event.start_mark),
                               help="remove the `---` separator; one file is one document")
                    raise Stop
            elif isinstance(event, kinds.collection_end):
                frame = stack.pop()
                self._remember(frame.anchor, frame.container, frame.path, frame.first_entry,
                               self.nodes - frame.first_node)
            elif isinstance(event, kinds.node):
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
        span = mark_span(self.file, event.start_mark, event.end_mark)
        kinds = self.kinds
        if isinstance(event, kinds.alias):
            value = self._alias(event, span, path, keep)
        elif isinstance(event, kinds.scalar):
            self._count(1, span)
            value = self._scalar(event, span)
            if keep:
                self.entries.append((False, path, span))
            self._remember(event.anchor, value, path, len(self.entries) - 1, 1)
        else:
            if len(stack) >= MAX_DEPTH:
                self.too_deep(span)
                raise Stop
            self._count(1, span)
            is_map = isinstance(event, kinds.mapping_start)
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
            raise Stop

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
            raise Stop
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
            raise Stop
        if not keep:
            return anchor.value
        # copies of the anchored node's spans, re-rooted here: an error inside an aliased
        # value points at the text that defines it
        self.entries.append((False, path, span))
        depth = len(anchor.path)
        for is_key, old, old_span in self.entries[anchor.entries[0] + 1:anchor.entries[1]]:
            self.entries.append((is_key, path + old[depth:], old_span))
        return copy_value(anchor.value)

    def _scalar(self, event: Any, span: Span) -> Any:
        tag = event.tag
        if tag is None and event.style is None:
            try:
                resolved = resolve_plain(event.value)
            except ValueError:
                self.error(INT_TOO_LARGE, "integer has too many digits", span,
                           help="quote it if it is meant as text")
                return None
            value = self._number(resolved, event.value, span)
            if value is resolved:  # not refused as a number already
                self._same_in_yaml_11(event.value, value, span)
            return value
        if tag in (None, "!", f"{CORE}str"):  # quoted, or tagged as a string
            return event.value
        kind = TYPED_TAGS.get(tag)
        if kind is None:
            self._check_tag(tag, "scalar", span)
            return event.value
        try:
            value = resolve_plain(event.value)
        except ValueError:
            value = event.value
        if not isinstance(value, EXPECTED[kind]) or (kind != "bool" and isinstance(value, bool)):
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
        if tag not in (None, "!", f"{CORE}{kind}"):
            self.error("MLC009", f"unsupported YAML tag `{show_tag(tag)}`", span,
                       help="mlc reads plain YAML values only (strings, numbers, booleans, "
                       "null, lists, mappings); remove the tag")

    # -- keys ------------------------------------------------------------------------------

    def _key(self, parent: _Frame, event: Any, stack: list[_Frame]) -> None:
        span = mark_span(self.file, event.start_mark, event.end_mark)
        parent.key, parent.expect_key = _SKIP, False
        kinds = self.kinds
        if isinstance(event, (kinds.mapping_start, kinds.sequence_start)):
            if parent.container is not None:
                kind = "mapping" if isinstance(event, kinds.mapping_start) else "list"
                self.error("MLC008", f"mapping keys must be strings, found a {kind}", span,
                           help="use a plain word as the key")
            self._node(parent, event, stack)  # composed, so its events balance, then dropped
            parent.key, parent.expect_key = _SKIP, False
            return
        reported = len(self.diags.errors)  # a warning (MLC385) keeps the key
        if isinstance(event, kinds.alias):
            key, shown, tag = self._alias(event, span, (), False), f"*{event.anchor}", None
        else:
            self._count(1, span)
            key, shown, tag = self._scalar(event, span), event.value, event.tag
            if event.value == "<<" and event.style is None and tag is None:
                tag = f"{CORE}merge"
        if parent.container is None or len(self.diags.errors) > reported:
            return
        if tag == f"{CORE}merge":
            self.error("MLC010", "YAML merge keys (`<<`) are not supported", span,
                       help="write the keys out, or put per-environment differences in "
                       "environments/<env>.yaml overlays")
        elif not isinstance(key, str):
            self.error("MLC008", f"mapping keys must be strings, found {type_name(key)} "
                       f"`{shown}`", span, help=f'quote the key: "{shown}":')
        elif key in parent.key_lines:
            self.error("MLC003", f"duplicate key `{key}`", span,
                       notes=(f"`{key}` is first defined at line {parent.key_lines[key]}",),
                       help="remove one of them; YAML keeps only one value per key")
        else:
            parent.key_lines[key] = span.line
            parent.key = key
            self.entries.append((True, parent.path + (key,), span))
            if isinstance(event, kinds.scalar):
                self._remember(event.anchor, key, parent.path + (key,), len(self.entries), 1)


def copy_value(value: Any) -> Any:
    # aliased subtrees are copied so no later pass can change two places through one object;
    # the cost is bounded by MAX_NODES, which was charged before copying
    if isinstance(value, dict):
        return {k: copy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_value(v) for v in value]
    return value
