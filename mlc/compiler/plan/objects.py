"""Split an output tree into the things a plan compares: objects, not text.

A YAML file whose documents are all Kubernetes objects (apiVersion, kind and metadata.name)
yields one item per object, keyed by apiVersion/kind/namespace/name, so that an object that
moves to another file, or a file whose documents are reordered, is not a change of the
object. Every other file (Feast definitions, dashboards, kustomization.yaml, a manifest that
someone broke by hand) is one item keyed by its path.

Parsing follows YAML 1.2 (ruamel.yaml's safe loader): `render` quotes every string that any
YAML or Go parser would read as another type, so the values read back are the values the
backends emitted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, order=True)
class Key:
    """What an item is: a Kubernetes object, or a file known only by its path.

    `kind` "object" uses api_version/obj_kind/namespace/name; "file" uses `path`. `path` is
    also set on an object whose identity appears twice in one tree (a hand-made duplicate),
    so that both copies stay visible instead of one hiding the other.
    """

    type: str  # "object" | "file"
    api_version: str = ""
    obj_kind: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def id(self) -> str:
        """Stable, human-readable identity: `apps/v1/Deployment/ns/name` or the file path."""
        if self.type == "file":
            return self.path
        ident = f"{self.api_version}/{self.obj_kind}/{self.namespace}/{self.name}"
        return f"{ident}@{self.path}" if self.path else ident

    @property
    def title(self) -> str:
        """How terminals and pull requests show it: `apps/v1 Deployment ns/name`."""
        if self.type == "file":
            return self.path
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.api_version} {self.obj_kind} {where}"


@dataclass(frozen=True)
class Item:
    key: Key
    file: str  # the path, relative to the environment folder, that holds it
    value: Any  # a manifest mapping; for files: YAML documents, a JSON value, or text


def split_tree(files: Mapping[str, bytes],
               parsed: Mapping[str, list[Item]] | None = None) -> dict[Key, Item]:
    """Every item of a tree (path -> bytes), keyed by identity; `parsed` saves re-parsing."""
    items: dict[Key, Item] = {}
    duplicated: set[Key] = set()
    for path in sorted(files):
        found = parsed[path] if parsed and path in parsed else split_file(path, files[path])
        for item in found:
            if item.key in items or item.key in duplicated:
                if item.key in items:
                    first = items.pop(item.key)
                    items[_with_path(first.key, first.file)] = _rekey(first)
                    duplicated.add(item.key)
                item = _rekey(item)
            items[item.key] = item
    return items


def split_file(path: str, data: bytes) -> list[Item]:
    suffix = PurePosixPath(path).suffix.lower()
    text = data.decode("utf-8", errors="replace")
    file_key = Key("file", path=path)
    if suffix in YAML_SUFFIXES:
        docs = load_yaml_documents(text)
        if docs is None:
            return [Item(file_key, path, text)]
        if docs and all(_is_object(d) for d in docs):
            return [Item(object_key(d), path, d) for d in docs]
        return [Item(file_key, path, docs[0] if len(docs) == 1 else docs)]
    if suffix == ".json":
        try:
            return [Item(file_key, path, json.loads(text))]
        except ValueError:
            return [Item(file_key, path, text)]
    return [Item(file_key, path, text)]


def load_yaml_documents(text: str) -> list[Any] | None:
    """The non-empty documents of a YAML stream; None when it does not parse.

    libyaml (through PyYAML) when it is installed: ten times faster than the pure-Python
    parser on a whole tree. Its YAML 1.1 rules read mlc's own output exactly as YAML 1.2
    does, because `render` quotes every scalar on which the two disagree.
    """
    try:
        docs = _load_all(text)
    except (ValueError, TypeError, RecursionError):
        return None
    return [_plain(d) for d in docs if d is not None]


def _loader():
    try:
        import yaml

        if getattr(yaml, "__with_libyaml__", False):
            def load_all(text: str) -> list[Any]:
                try:
                    return list(yaml.load_all(text, Loader=yaml.CSafeLoader))
                except yaml.YAMLError as exc:
                    raise ValueError(str(exc)) from None

            return load_all
    except ImportError:
        pass

    def load_all_pure(text: str) -> list[Any]:
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        try:
            return list(YAML(typ="safe", pure=True).load_all(text))
        except YAMLError as exc:
            raise ValueError(str(exc)) from None

    return load_all_pure


_load_all = _loader()


def object_key(doc: Mapping[str, Any]) -> Key:
    meta = doc["metadata"]
    return Key("object", api_version=str(doc["apiVersion"]), obj_kind=str(doc["kind"]),
               namespace=str(meta.get("namespace") or ""), name=str(meta["name"]))


def _is_object(doc: Any) -> bool:
    if not isinstance(doc, dict) or doc.get("kind") == "Kustomization":
        return False
    meta = doc.get("metadata")
    return (isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str)
            and isinstance(meta, dict) and isinstance(meta.get("name"), str))


def _with_path(key: Key, path: str) -> Key:
    return Key(key.type, key.api_version, key.obj_kind, key.namespace, key.name, path)


def _rekey(item: Item) -> Item:
    return Item(_with_path(item.key, item.file), item.file, item.value)


def _plain(value: Any) -> Any:
    """Dates and other YAML-only types become strings, so values compare like JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN or infinity; the plan stays valid JSON
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def dig(value: Any, *keys: str) -> Any:
    """value[k1][k2]...: None where a key is missing or a level is not a mapping."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
