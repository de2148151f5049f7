"""Field-level diff of two JSON-like values (what was there, what will be there).

Paths are tuples of segments: a string is a mapping key, an int a list index, and a
`Named` selects the item of a list of named mappings (containers, env, ports, volumes) by
its name, so that inserting a container does not show every later one as changed.

A string held under a key ending in `.json` or `.yaml` (the `project.json` of the runtime
ConfigMap, a `feature_store.yaml` in a ConfigMap) is compared as the document it holds,
when both sides parse: a changed replica count shows as one field, not as a changed blob.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ADD, REMOVE, CHANGE, REORDER = "add", "remove", "change", "reorder"
_EMBEDDED_JSON = (".json",)
_EMBEDDED_YAML = (".yaml", ".yml")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Named:
    name: str

    def __str__(self) -> str:
        return f"[name={self.name}]"


Segment = str | int | Named
Path = tuple[Segment, ...]


@dataclass(frozen=True)
class FieldChange:
    op: str  # add | remove | change | reorder (old/new: the names, in order)
    path: Path
    old: Any = MISSING
    new: Any = MISSING

    @property
    def path_text(self) -> str:
        return format_path(self.path)


def diff_values(old: Any, new: Any, path: Path = ()) -> list[FieldChange]:
    """Every difference between `old` and `new`, in a stable order (keys sorted)."""
    out: list[FieldChange] = []
    _diff(old, new, path, out)
    return out


def _diff(old: Any, new: Any, path: Path, out: list[FieldChange]) -> None:
    if _same(old, new):
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if key not in new:
                out.append(FieldChange(REMOVE, (*path, key), old=old[key]))
            elif key not in old:
                out.append(FieldChange(ADD, (*path, key), new=new[key]))
            else:
                _diff(old[key], new[key], (*path, key), out)
        return
    if isinstance(old, list) and isinstance(new, list):
        _diff_lists(old, new, path, out)
        return
    if isinstance(old, str) and isinstance(new, str) and path and isinstance(path[-1], str):
        embedded = _embedded(path[-1], old), _embedded(path[-1], new)
        if embedded[0] is not MISSING and embedded[1] is not MISSING:
            _diff(embedded[0], embedded[1], path, out)
            return
    out.append(FieldChange(CHANGE, path, old=old, new=new))


def _diff_lists(old: list, new: list, path: Path, out: list[FieldChange]) -> None:
    old_names, new_names = _names(old), _names(new)
    if old_names is not None and new_names is not None:
        old_by = dict(zip(old_names, old, strict=True))
        new_by = dict(zip(new_names, new, strict=True))
        for name in old_names:
            if name not in new_by:
                out.append(FieldChange(REMOVE, (*path, Named(name)), old=old_by[name]))
        for name in new_names:
            if name not in old_by:
                out.append(FieldChange(ADD, (*path, Named(name)), new=new_by[name]))
            else:
                _diff(old_by[name], new_by[name], (*path, Named(name)), out)
        kept_old = [n for n in old_names if n in new_by]
        kept_new = [n for n in new_names if n in old_by]
        if kept_old != kept_new:  # order can matter (env var expansion, init containers)
            out.append(FieldChange(REORDER, path, old=kept_old, new=kept_new))
        return
    if len(old) != len(new) and not any(isinstance(v, (dict, list)) for v in old + new):
        # A list of scalars that grew or shrank reads best whole: `[a, b] -> [a, x, b]`.
        out.append(FieldChange(CHANGE, path, old=old, new=new))
        return
    for i in range(max(len(old), len(new))):
        if i >= len(new):
            out.append(FieldChange(REMOVE, (*path, i), old=old[i]))
        elif i >= len(old):
            out.append(FieldChange(ADD, (*path, i), new=new[i]))
        else:
            _diff(old[i], new[i], (*path, i), out)


def _names(items: list) -> list[str] | None:
    """The names of a list of named mappings, when every item has a distinct one."""
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str)
                            for i in items):
        return None
    names = [i["name"] for i in items]
    return names if len(set(names)) == len(names) else None


def _embedded(key: str, text: str) -> Any:
    """The document a string holds, judged by its key's suffix; MISSING when it is not one."""
    lower = key.lower()
    if lower.endswith(_EMBEDDED_JSON):
        try:
            value = json.loads(text)
        except ValueError:
            return MISSING
        return value if isinstance(value, (dict, list)) else MISSING
    if lower.endswith(_EMBEDDED_YAML):
        from .objects import load_yaml_documents

        docs = load_yaml_documents(text)
        if docs is not None and len(docs) == 1 and isinstance(docs[0], (dict, list)):
            return docs[0]
    return MISSING


def _same(a: Any, b: Any) -> bool:
    # `1 == True` and `1 == 1.0` in Python; in a manifest they are different values.
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# ---------------------------------------------------------------------------------------
# Paths


def format_path(path: Path) -> str:
    """`spec.template.spec.containers[name=serve].image`, `data["project.json"].models`."""
    out = ""
    for seg in path:
        if isinstance(seg, Named):
            out += str(seg)
        elif isinstance(seg, int):
            out += f"[{seg}]"
        elif _plain_key(seg):
            out += ("." if out else "") + seg
        else:
            out += f"[{json.dumps(seg, ensure_ascii=False)}]"
    return out or "(whole file)"


def _plain_key(key: str) -> bool:
    return bool(key) and all(c.isalnum() or c in "_-/" for c in key)


def path_to_json(path: Path) -> list[Any]:
    """Segments for the JSON plan: strings, integers, or {"name": ...} for named items."""
    return [{"name": s.name} if isinstance(s, Named) else s for s in path]
