"""What the plan comment leaves out or folds, so that a small edit reads small.

* A file that a ConfigMap also carries (the Feast repository's `features.py`, its
  `feature_store.yaml`) changes in both places: the ConfigMap's copy is folded into a note
  pointing at the file's own diff.
* The provenance of the runtime's `project.json` (`origin: {file, line}` of every value)
  moves with every line added above it: those line numbers are counted, not shown.
* A list of scalars that grew or shrank (a kustomization's `resources`) shows the items
  that came and went, not both whole lists.

Only the markdown comment folds; the text and JSON formats keep every change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .diff import CHANGE, MISSING, FieldChange, format_path
from .model import Action


def is_provenance(change: FieldChange) -> bool:
    """A source line number recorded for a value: `...origin.line`."""
    path = change.path
    return (change.op == CHANGE and len(path) >= 2 and path[-1] == "line"
            and path[-2] == "origin" and isinstance(change.old, int)
            and isinstance(change.new, int))


@dataclass(frozen=True)
class Folded:
    changes: tuple[FieldChange, ...]  # what is still shown
    mirrors: tuple[tuple[str, str], ...]  # (ConfigMap data key, the file it mirrors)
    provenance: int  # line numbers left out


def fold(action: Action, actions: Iterable[Action]) -> Folded:
    mirrored = _mirrored(action, actions)
    shown, provenance = [], 0
    for change in action.changes:
        if is_provenance(change):
            provenance += 1
        elif len(change.path) >= 2 and change.path[0] == "data" and change.path[1] in mirrored:
            continue
        else:
            shown.append(change)
    return Folded(tuple(_by_item(shown)), tuple(sorted(mirrored.items())), provenance)


def _by_item(changes: list[FieldChange]) -> list[FieldChange]:
    """Changes at consecutive indexes of one list of scalars (an item removed shifts every
    later one) become one change of that list, which `list_items` reads as items."""
    out: list[FieldChange] = []
    run: list[FieldChange] = []

    def flush() -> None:
        if len(run) > 1:
            merged = FieldChange(CHANGE, run[0].path[:-1],
                                 old=[c.old for c in run if c.old is not MISSING],
                                 new=[c.new for c in run if c.new is not MISSING])
            if list_items(merged) is not None:
                out.append(merged)
                run.clear()
                return
        out.extend(run)
        run.clear()

    for change in changes:
        indexed = (change.path and isinstance(change.path[-1], int)
                   and not isinstance(change.path[-1], bool)
                   and not any(isinstance(v, (dict, list)) for v in (change.old, change.new)))
        if indexed and run and run[-1].path[:-1] == change.path[:-1]:
            run.append(change)
            continue
        flush()
        if indexed:
            run.append(change)
        else:
            out.append(change)
    flush()
    return out


def _mirrored(action: Action, actions: Iterable[Action]) -> dict[str, str]:
    """ConfigMap data keys whose new content is that of another changed file of the tree,
    beside the ConfigMap (`feast/repo-configmap.yaml` carries `feast/features.py`)."""
    key = action.key
    if key.type != "object" or key.obj_kind != "ConfigMap" or not isinstance(action.new, dict):
        return {}
    data = action.new.get("data") or {}
    folder = PurePosixPath(action.file).parent
    files = {PurePosixPath(a.file).name: a for a in actions
             if a is not action and a.key.type == "file" and a.changes
             and PurePosixPath(a.file).parent == folder}
    out = {}
    for name, text in data.items():
        other = files.get(name)
        if other is not None and isinstance(text, str) and _same_content(text, other.new):
            out[name] = other.file
    return out


def _same_content(text: str, value: Any) -> bool:
    if isinstance(value, str):
        return value == text
    from .objects import load_yaml_documents  # a YAML or JSON file is compared parsed

    docs = load_yaml_documents(text)
    return docs is not None and len(docs) == 1 and docs[0] == value


def list_items(change: FieldChange) -> tuple[list[Any], list[Any]] | None:
    """(removed, added) items of a list of scalars that changed whole, or None."""
    old, new = change.old, change.new
    if change.op != CHANGE or not isinstance(old, list) or not isinstance(new, list):
        return None
    if any(isinstance(v, (dict, list)) for v in old + new):
        return None
    kept = Counter(old) & Counter(new)
    removed = _take(old, Counter(old) - kept)
    added = _take(new, Counter(new) - kept)
    if not removed and not added:
        return None  # the same items in another order: shown as it is
    return removed, added


def _take(items: list[Any], counts: Counter) -> list[Any]:
    """The items `counts` names, in the list's order."""
    out = []
    for item in items:
        if counts[item] > 0:
            counts[item] -= 1
            out.append(item)
    return out


def item_path(path: tuple) -> str:
    return format_path(path) + "[]"
