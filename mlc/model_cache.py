"""mlc's own pydantic models, built once and kept between processes.

Building the models of ml.yaml (`mlc.schema`) and of the IR (`mlc.compiler.ir`) is most of
`mlc validate`'s start-up: reading every field's docstring from the source, generating each
class's core schema in Python, building its validator. Both bases are `defer_build` and go
through `CachedModel`: the first process that needs a validator builds every class of its
family the ordinary way and writes a cache file of what came out (each class's core schema
and core config, and its fields' descriptions); later processes read that file and build a
class's validator from its stored core schema, when the class is first used.

The file's name holds a hash of the family's source files, of this module, and of the
Python, pydantic and pydantic-core versions, so an edited model never meets an old file (the
families import nothing of mlc outside themselves, so their sources are all that counts;
tests/test_model_cache.py keeps it so).
Anything unusual (no cache folder, a file that cannot be read or unpickled, one written by
another user, a class the file does not know) falls back to pydantic's own build: the cache
changes how fast the classes are ready, never what they are (tests/test_model_cache.py).

`MLC_CACHE_DIR` names the folder (empty: no cache); otherwise `$XDG_CACHE_HOME/mlc` or
`~/.cache/mlc`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import pydantic
import pydantic_core
from pydantic_core import SchemaSerializer, SchemaValidator

FORMAT = 1  # of the file; a change of layout changes it
KEEP_OTHERS = 3  # files of other sources kept beside this one's, newest first
# What install() sets and calls on a class; a pydantic without them builds every class itself
_NEEDS = ("__pydantic_fields_complete__", "__pydantic_on_complete__", "__pydantic_complete__")


def cache_dir() -> Path | None:
    """The folder of the cache files; None when `MLC_CACHE_DIR` is set empty."""
    named = os.environ.get("MLC_CACHE_DIR")
    if named is not None:
        return Path(named) if named else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlc"


def _owned(st: os.stat_result) -> bool:
    """Written by this user and by no one else (a pickle runs code when it is read)."""
    if not hasattr(os, "getuid"):
        return True
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _class_key(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class Family:
    """The classes under one base (`Spec`, `IR`), the modules that define them, and their file."""

    def __init__(self, name: str, package: str, modules: list[str], docstrings: bool):
        self.name = name
        self.package = package  # "mlc.schema": where the family's classes are defined
        self.modules = modules  # module names in that package; ["*"]: all of them
        self.docstrings = docstrings  # the family's fields take descriptions from docstrings
        self.building = False
        self.written = False
        self.key = self._key()
        self.entries: dict[str, tuple[dict[str, str], bytes | None]] | None = self._read()

    @property
    def hit(self) -> bool:
        return self.entries is not None

    # -- the file --------------------------------------------------------------------------

    def _sources(self) -> list[Path]:
        folder = Path(__file__).parent.joinpath(*self.package.split(".")[1:])
        if self.modules == ["*"]:
            return sorted(folder.glob("*.py"))
        return [folder / f"{m}.py" for m in self.modules]

    def _key(self) -> str | None:
        if not all(hasattr(pydantic.BaseModel, name) for name in _NEEDS):
            return None
        digest = hashlib.sha256()
        for part in (str(FORMAT), sys.version, pydantic.VERSION, pydantic_core.__version__):
            digest.update(part.encode() + b"\0")
        try:
            for path in [Path(__file__), *self._sources()]:
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError:  # no sources to hash (a zip): no cache
            return None
        return digest.hexdigest()[:32]

    def path(self) -> Path | None:
        folder = cache_dir()
        if folder is None or self.key is None:
            return None
        return folder / f"{self.name}-{self.key}.pickle"

    def _read(self) -> dict | None:
        path = self.path()
        if path is None:
            return None
        try:
            if not _owned(os.stat(path.parent)):  # others could put anything there
                return None
            with open(path, "rb") as f:
                if not _owned(os.fstat(f.fileno())):
                    return None
                stored = pickle.load(f)
            if stored["format"] != FORMAT or stored["key"] != self.key:
                return None
            return stored["classes"]
        except Exception:  # missing, truncated, unreadable: build as if there were none
            return None

    def _write(self, classes: dict[str, tuple[dict[str, str], bytes | None]]) -> None:
        path = self.path()
        if path is None:
            return
        try:
            data = pickle.dumps({"format": FORMAT, "key": self.key, "classes": classes},
                                protocol=pickle.HIGHEST_PROTOCOL)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)  # readers see the old file or the whole new one
            except BaseException:
                os.unlink(tmp)
                raise
            self._prune(path)
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            pass  # an unwritable cache folder only costs the next process the build

    def _prune(self, path: Path) -> None:
        """Keep the files of the few sources used last (branches, virtual environments side
        by side), and remove older ones."""
        others = [p for p in path.parent.glob(f"{self.name}-*.pickle") if p != path]
        others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for old in others[KEEP_OTHERS:]:
            old.unlink(missing_ok=True)

    # -- the classes -----------------------------------------------------------------------

    def created(self, cls: type) -> None:
        """A class was just defined: give its fields the stored descriptions (on a hit the
        family's base reads no docstrings itself)."""
        if not (self.docstrings and self.entries is not None):
            return
        entry = self.entries.get(_class_key(cls))
        docs = entry[0] if entry is not None else _docstrings_from_source(cls)
        for name, field in cls.__pydantic_fields__.items():
            if field.description is None and name in docs:
                field.description = docs[name]

    def install(self, cls: Any) -> bool:
        """Make `cls` complete from the stored core schema; False when it is not stored."""
        if self.entries is None or not cls.__pydantic_fields_complete__:
            return False
        entry = self.entries.get(_class_key(cls))
        if entry is None or entry[1] is None:
            return False
        try:
            schema, config = pickle.loads(entry[1])
            validator = SchemaValidator(schema, config)
            serializer = SchemaSerializer(schema, config)
        except Exception:
            return False
        cls.__pydantic_core_schema__ = schema
        cls.__pydantic_validator__ = validator
        cls.__pydantic_serializer__ = serializer
        _set_signature(cls)
        cls.__pydantic_complete__ = True
        cls.__pydantic_on_complete__()
        return True

    def built(self, base: type) -> None:
        """After pydantic built a class itself: on a miss, build the whole family and store it."""
        path = self.path()
        if self.entries is not None or self.building or self.written or path is None:
            return
        self.written = True  # once per process, stored or not
        try:  # a folder that cannot be written (a read-only root file system): build nothing more
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not os.access(path.parent, os.W_OK):
                return
        except OSError:
            return
        self.building = True
        try:
            classes = self._build_all(base)
        except Exception:  # noqa: BLE001 - whatever went wrong, this process has its classes
            classes = None
        finally:
            self.building = False
        if classes is not None:
            self._write(classes)

    def _build_all(self, base: type) -> dict[str, tuple[dict[str, str], bytes | None]] | None:
        from pydantic._internal._config import ConfigWrapper

        for module in self._module_names():
            importlib.import_module(module)
        classes: dict[str, tuple[dict[str, str], bytes | None]] = {}
        for cls in [base, *_subclasses(base)]:
            if not cls.__module__.startswith(self.package + "."):
                continue  # defined elsewhere (a test): built by pydantic, docstrings read
            key = _class_key(cls)
            if "<" in cls.__qualname__ or key in classes:
                return None  # two classes one name: nothing can be stored for either
            if cls.model_rebuild(raise_errors=False) is False:
                return None
            docs = {name: f.description for name, f in cls.__pydantic_fields__.items()
                    if f.description is not None}
            config = ConfigWrapper(cls.model_config, check=False).core_config(title=cls.__name__)
            try:
                blob = pickle.dumps((cls.__pydantic_core_schema__, config),
                                    protocol=pickle.HIGHEST_PROTOCOL)
            except (pickle.PicklingError, TypeError, AttributeError):
                blob = None  # built by pydantic in every process; its descriptions are stored
            classes[key] = (docs, blob)
        return classes

    def _module_names(self) -> list[str]:
        if self.modules != ["*"]:
            return [f"{self.package}.{m}" for m in self.modules]
        return [f"{self.package}.{p.stem}" for p in self._sources() if p.stem != "__init__"]


def _set_signature(cls: Any) -> None:
    """The `__init__` signature pydantic gives a class it completes (`inspect.signature`)."""
    try:
        from functools import partial

        from pydantic._internal._config import ConfigWrapper
        from pydantic._internal._signature import generate_pydantic_signature
        from pydantic._internal._utils import LazyClassAttribute

        config = ConfigWrapper(cls.model_config, check=False)
        cls.__signature__ = LazyClassAttribute("__signature__", partial(
            generate_pydantic_signature, init=cls.__init__, fields=cls.__pydantic_fields__,
            validate_by_alias=config.validate_by_alias, extra=config.extra))
    except (ImportError, AttributeError, TypeError):
        pass  # another pydantic: the generic signature; nothing validates differently


def _subclasses(base: type) -> list[type]:
    found, todo = [], list(base.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls not in found:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return found


def _docstrings_from_source(cls: type) -> dict[str, str]:
    """What pydantic's `use_attribute_docstrings` reads, for a class the file does not know."""
    try:
        from pydantic._internal._docs_extraction import extract_docstrings_from_cls

        return extract_docstrings_from_cls(cls)
    except Exception:
        return {}


class CachedModel:
    """Mixed into a `defer_build` pydantic base whose class attribute `__mlc_family__` is a
    `Family`: every subclass is completed from the family's file when it can be."""

    __mlc_family__: Family

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)  # type: ignore[misc]
        cls.__mlc_family__.created(cls)

    @classmethod
    def model_rebuild(cls, *, force: bool = False, raise_errors: bool = True,
                      _parent_namespace_depth: int = 2, _types_namespace: Any = None,
                      ) -> bool | None:
        family = cls.__mlc_family__
        if not force and not cls.__pydantic_complete__ and family.install(cls):
            return True
        done = super().model_rebuild(  # type: ignore[misc]
            force=force, raise_errors=raise_errors, _types_namespace=_types_namespace,
            _parent_namespace_depth=_parent_namespace_depth + 1 if _parent_namespace_depth
            else 0)
        if done:
            family.built(_family_base(cls))
        return done


def _family_base(cls: type) -> type:
    """The class of `cls`'s MRO that names the family (Spec, IR)."""
    for klass in cls.__mro__:
        if "__mlc_family__" in vars(klass):
            return klass
    return cls
