"""The resolve pass over the valid rest of a project whose schema check failed.

A schema error stops the typed project from being built, and resolve needs a typed project;
without this pass a bad duration hides a dangling hardware reference until the next run.
Here the invalid parts are cut out of a copy of the document (the bad value, or the entry
holding a missing key; a list as a whole, so that the positions of what stays are still
right), the rest is validated again until it passes, and resolve runs on it. Its errors are
kept unless they could be consequences of the cut: about a cut place or below it, pointing
at one, or naming an entry that was cut (`model `churn` is not defined` after `churn` was
cut for a bad value).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from pydantic import ValidationError

from ..schema import Project
from .diagnostics import Diagnostic, Diagnostics, FieldPath
from .load import Document
from .validate import data_path

_ROUNDS = 8  # each round cuts at least one place; a project is rarely wrong in more layers


def valid_rest(doc: Document) -> tuple[Project, Document, list[FieldPath]] | None:
    """The project validated from `doc` less its invalid parts, that document, and the
    places cut; None where a whole top-level section would have to go."""
    data = copy.deepcopy(doc.data)
    cut: list[FieldPath] = []
    for _ in range(_ROUNDS):
        try:
            project = Project.model_validate(data, strict=True)
        except ValidationError as exc:
            places = {_cut_place(data, data_path(data, e["loc"]), e["type"])
                      for e in exc.errors(include_url=False)}
            if any(len(place) < 2 for place in places):
                return None  # a whole section is wrong: everything may depend on it
            before = len(cut)
            for place in sorted(places, key=len):
                if not any(place[:len(done)] == done for done in cut) and _remove(data, place):
                    cut.append(place)
            if len(cut) == before:  # nothing left that can be cut
                return None
            continue
        return project, dataclasses.replace(doc, data=data), cut
    return None


def independent(found: Diagnostics, cut: list[FieldPath], doc: Document) -> list[Diagnostic]:
    """The errors of the resolve run over the valid rest that the cut cannot have caused."""
    spans = {doc.spans.get(p) for p in cut} | {doc.key_spans.get(p) for p in cut}
    spans.discard(None)
    names = {_entry(p) for p in cut if len(p) == 2} - {None}
    kept, dropped = list(found.errors), True
    while dropped:  # a dropped error's entry failed too: what names it is dropped in turn
        dropped = False
        for d in list(kept):
            if _caused(d, cut, spans, names):
                kept.remove(d)
                names.add(_entry(d.path))
                dropped = True
        names.discard(None)
    return kept


def _entry(path: FieldPath) -> str | None:
    """The user's name of the entry a path lies in (`churn` of `models.churn.task`)."""
    return path[1] if len(path) >= 2 and isinstance(path[1], str) else None


def _caused(d: Diagnostic, cut: list[FieldPath], spans: set, names: set) -> bool:
    if any(d.path[:len(p)] == p for p in cut) or d.span in spans:
        return True
    text = d.message + " " + " ".join(d.notes)
    return any(f"`{name}`" in text for name in names)


def _cut_place(data: Any, path: FieldPath, kind: str) -> FieldPath:
    """What to remove for one error: the value itself, or the mapping that misses a key; a
    list as a whole, since removing one item would move the positions of those after it."""
    if kind == "missing":
        path = path[:-1]
    for i, part in enumerate(path):
        if isinstance(part, int):
            return path[:i]
    # a key that was never there (missing) cannot be removed: take its parent
    node: Any = data
    for i, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            return path[:i]
        node = node[part]
    return path


def _remove(data: Any, place: FieldPath) -> bool:
    node: Any = data
    for part in place[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    if not place or not isinstance(node, dict) or place[-1] not in node:
        return False
    del node[place[-1]]
    return True
