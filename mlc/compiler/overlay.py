"""Overlay: merge `environments/<env>.yaml` over `ml.yaml`, keeping track of which file set
every value, so that a later error points at the file the user has to edit.

Merge rules (quoted in the user documentation; change both together):

1. Mappings merge recursively, key by key. Keys keep the base's order; keys that only the
   overlay has are appended in the overlay's order.
2. A scalar or a list in the overlay replaces the base value. `key: null` sets the value to
   null; it does not delete the key (use `$patch: delete` for that).
3. A list whose items are all mappings with a string `name` key, each name appearing once, in
   both the base and the overlay, merges by name: an overlay item whose name is in the base
   merges recursively into that item, which keeps its position; items with new names are
   appended in the overlay's order. Any other list (including an empty one) is replaced
   wholesale.
4. When the two sides have different types (a mapping over a scalar or list, or a scalar or
   list over a mapping), the overlay value replaces the base value.
5. Directives, written as the key `$patch` inside an overlay mapping:
   - `$patch: delete` removes that key, or that named list item, from the result.
     Deleting something the base does not have is a warning (MLC012).
   - `$patch: replace` uses this mapping (without the `$patch` key) instead of merging it
     with the base value.
   Any other `$patch` value, any other key starting with `$` in an overlay, `$patch` at the
   top level of an overlay with `delete`, and `$patch` anywhere in the base file are errors
   (MLC011).
6. An overlay may not change `apiVersion` or `kind` (MLC013); repeating the base's values
   is allowed.

Provenance: the merged document's value spans point at the overlay wherever the overlay set
or replaced a value, and at the base elsewhere; a mapping or named list that was merged
keeps the base's span, its overridden children carry the overlay's. A key's span follows the
same rule as its value.
"""

from __future__ import annotations

from typing import Any

from mlc.compiler.diagnostics import (
    Diagnostics,
    FieldPath,
    Span,
    did_you_mean,
    format_path,
)
from mlc.compiler.load import Document

__all__ = ["merge_documents"]

PATCH = "$patch"
DIRECTIVES = ("delete", "replace")
FIXED_KEYS = ("apiVersion", "kind")


def merge_documents(base: Document, overlay: Document, diags: Diagnostics) -> Document:
    """The overlay merged over the base; `file` is the base's, spans say which file set what."""
    merger = _Merger(base, overlay, diags)
    merger.check_base(base.data, ())
    merger.check_overlay(overlay.data, ())
    data = merger.merge(base.data, (), overlay.data, (), ())
    if isinstance(base.data, dict):
        data = merger.keep_fixed_keys(data)
    return Document(base.file, data, merger.spans, merger.key_spans,
                    texts={**base.texts, **overlay.texts})


def _directive(value: Any) -> str | None:
    if isinstance(value, dict):
        patch = value.get(PATCH)
        if patch in DIRECTIVES:
            return patch
    return None


def _is_directive(key: Any) -> bool:
    return isinstance(key, str) and key.startswith("$")


def _merges(b: Any, o: Any) -> bool:
    """Whether an overlay value merges into the base value rather than replacing it."""
    if isinstance(b, dict) and isinstance(o, dict):
        return _directive(o) != "replace"
    return _names(b) is not None and _names(o) is not None


def _names(items: Any) -> list[str] | None:
    """The item names of a list that merges by name, else None."""
    if not isinstance(items, list) or not items:
        return None
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        return None
    return names


class _Merger:
    def __init__(self, base: Document, overlay: Document, diags: Diagnostics):
        self.base, self.overlay, self.diags = base, overlay, diags
        self.spans: dict[FieldPath, Span] = {}
        self.key_spans: dict[FieldPath, Span] = {}

    # -- checks, before merging, so every problem is reported once whatever the merge visits

    def check_base(self, value: Any, path: FieldPath) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                if key == PATCH:
                    self.diags.error(
                        "MLC011", f"`{PATCH}` is only allowed in environment overlays",
                        span=self.base.key_spans.get(path + (key,)) or self.base.span_for(path),
                        path=path, help=f"remove `{PATCH}` from {self.base.file}; to change a "
                        "value per environment, write the change in environments/<env>.yaml")
                self.check_base(child, path + (key,))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                self.check_base(child, path + (index,))

    def check_overlay(self, value: Any, path: FieldPath) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                where = path + (key,)
                if key == PATCH:
                    self._check_directive(child, where, at_root=not path)
                elif _is_directive(key):
                    self.diags.error(
                        "MLC011", f"unknown overlay directive `{key}`",
                        span=self.overlay.key_spans.get(where) or self.overlay.span_for(where),
                        path=where, help=did_you_mean(key, [PATCH]))
                self.check_overlay(child, where)
        elif isinstance(value, list):
            for index, child in enumerate(value):
                self.check_overlay(child, path + (index,))

    def _check_directive(self, value: Any, where: FieldPath, *, at_root: bool) -> None:
        span = self.overlay.span_for(where)
        if value not in DIRECTIVES:
            shown = value if isinstance(value, str) else repr(value)
            self.diags.error("MLC011", f"unknown `{PATCH}` directive `{shown}`", span=span,
                             path=where, help=did_you_mean(str(value), DIRECTIVES))
        elif value == "delete" and at_root:
            self.diags.error("MLC011", f"`{PATCH}: delete` cannot delete a whole file",
                             span=span, path=where,
                             help="to drop every override, delete the overlay file instead")

    # -- merging ---------------------------------------------------------------------------

    def merge(self, b: Any, bpath: FieldPath, o: Any, opath: FieldPath, rpath: FieldPath) -> Any:
        """Merge overlay value `o` over base value `b`; the result lives at `rpath`."""
        if not _merges(b, o):
            return self.take(self.overlay, o, opath, rpath)
        if isinstance(b, dict):
            return self._merge_mapping(b, bpath, o, opath, rpath)
        return self._merge_named(b, bpath, o, opath, rpath)

    def _merge_mapping(self, b: dict, bpath: FieldPath, o: dict, opath: FieldPath,
                       rpath: FieldPath) -> dict:
        self._value_span(self.base, bpath, rpath)
        result: dict[str, Any] = {}
        for key, bv in b.items():
            if key == PATCH:
                continue
            if key not in o:
                result[key] = self.take(self.base, bv, bpath + (key,), rpath + (key,))
                self._key_span(self.base, bpath + (key,), rpath + (key,))
                continue
            ov = o[key]
            if _directive(ov) == "delete":
                continue
            result[key] = self.merge(bv, bpath + (key,), ov, opath + (key,), rpath + (key,))
            layer, lpath = (self.base, bpath) if _merges(bv, ov) else (self.overlay, opath)
            self._key_span(layer, lpath + (key,), rpath + (key,))
        for key, ov in o.items():
            if key in b or _is_directive(key):
                continue
            if _directive(ov) == "delete":
                self._nothing_to_delete(opath + (key,), rpath, f"key `{key}`")
                continue
            result[key] = self.take(self.overlay, ov, opath + (key,), rpath + (key,))
            self._key_span(self.overlay, opath + (key,), rpath + (key,))
        return result

    def _merge_named(self, b: list, bpath: FieldPath, o: list, opath: FieldPath,
                     rpath: FieldPath) -> list:
        self._value_span(self.base, bpath, rpath)
        base_names, overlay_names = _names(b) or [], _names(o) or []
        by_name = dict(zip(overlay_names, range(len(o)), strict=True))
        result: list[Any] = []
        for bi, (name, bv) in enumerate(zip(base_names, b, strict=True)):
            where = rpath + (len(result),)
            if name not in by_name:
                result.append(self.take(self.base, bv, bpath + (bi,), where))
                continue
            oi = by_name[name]
            if _directive(o[oi]) == "delete":
                continue
            result.append(self.merge(bv, bpath + (bi,), o[oi], opath + (oi,), where))
        known = set(base_names)
        for oi, (name, ov) in enumerate(zip(overlay_names, o, strict=True)):
            if name in known:
                continue
            if _directive(ov) == "delete":
                self._nothing_to_delete(opath + (oi,), rpath, f"item named `{name}`")
                continue
            result.append(self.take(self.overlay, ov, opath + (oi,), rpath + (len(result),)))
        return result

    def take(self, layer: Document, value: Any, src: FieldPath, dst: FieldPath) -> Any:
        """Copy `value` from one layer, with its spans, dropping directives it carries."""
        self._value_span(layer, src, dst)
        if isinstance(value, dict):
            result: dict[str, Any] = {}
            for key, child in value.items():
                if key == PATCH or (layer is self.overlay and _is_directive(key)):
                    continue  # reported by the checks; never part of the result
                if layer is self.overlay and _directive(child) == "delete":
                    self._nothing_to_delete(src + (key,), dst, f"key `{key}`")
                    continue
                result[key] = self.take(layer, child, src + (key,), dst + (key,))
                self._key_span(layer, src + (key,), dst + (key,))
            return result
        if isinstance(value, list):
            items: list[Any] = []
            for index, child in enumerate(value):
                if layer is self.overlay and _directive(child) == "delete":
                    self._nothing_to_delete(src + (index,), dst, f"item {index}")
                    continue
                items.append(self.take(layer, child, src + (index,), dst + (len(items),)))
            return items
        return value

    def keep_fixed_keys(self, data: Any) -> Any:
        """apiVersion and kind say how to read the whole project; an environment cannot
        change them. On a change, report it and keep the base's values."""
        if not isinstance(data, dict):
            data = {}
        base = self.base.data
        for key in FIXED_KEYS:
            if data.get(key, _MISSING) == base.get(key, _MISSING):
                continue
            changed = "removes" if key not in data else "changes"
            self.diags.error("MLC013", f"an environment overlay {changed} `{key}`",
                             span=self.overlay.span_for((key,)), path=(key,),
                             help=f"remove `{key}` from {self.overlay.file}; it must match "
                             f"{self.base.file}")
            if key in base:
                data[key] = base[key]
                self._value_span(self.base, (key,), (key,))
                self._key_span(self.base, (key,), (key,))
            else:
                data.pop(key, None)
        return data

    # -- spans and warnings ----------------------------------------------------------------

    def _value_span(self, layer: Document, src: FieldPath, dst: FieldPath) -> None:
        span = layer.spans.get(src)
        if span is not None:
            self.spans[dst] = span

    def _key_span(self, layer: Document, src: FieldPath, dst: FieldPath) -> None:
        span = layer.key_spans.get(src)
        if span is not None:
            self.key_spans[dst] = span

    def _nothing_to_delete(self, opath: FieldPath, parent: FieldPath, what: str) -> None:
        where = f" under `{format_path(parent)}`" if parent else ""
        self.diags.warning(
            "MLC012", f"`{PATCH}: delete` removes nothing: {self.base.file} has no {what}{where}",
            span=self.overlay.span_for(opath + (PATCH,)), path=parent,
            help=f"remove this entry from {self.overlay.file}, or check the spelling")


_MISSING = object()
