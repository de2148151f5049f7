"""hera models parsed once per distinct value, and shared by every object that uses them.

The same pieces recur in every workflow object of a project (the container security
context, the resources of a hardware class, the run folder's mount, most of a step's
environment): at platform scale hera's pydantic validation of them was repeated tens of
thousands of times per environment. `parsed(cls, data)` validates `data` with hera's own
`cls.parse_obj` the first time and hands out that instance for every equal `data` after.

Sharing is safe because a hera model placed in another one is copied by pydantic
(`copy_on_model_validation`), and neither hera nor mlc changes a model after building it;
tests/test_argo_model_dict.py checks both after compiling the example and golden projects.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from hera.shared._pydantic import PydanticBaseModel

Model = TypeVar("Model", bound=PydanticBaseModel)

# Distinct values stay few (they vary with the hardware classes, sources and pipelines); the
# bound keeps a project of unique values from growing it without end.
_MAX_ENTRIES = 1 << 14
_cache: dict[tuple[type, str], Any] = {}


def parsed(cls: type[Model], data: Any) -> Model:
    """`cls.parse_obj(data)`, validated once per distinct `data` (by its JSON text, which
    tells 1 from 1.0, "1" and true, and keeps the key order hera keeps)."""
    try:
        key = (cls, json.dumps(data, allow_nan=False))
    except (TypeError, ValueError):  # not plain data: validate it every time
        return cls.parse_obj(data)
    model = _cache.get(key)
    if model is None:
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        model = _cache[key] = cls.parse_obj(data)
    return model


def cached() -> list[tuple[type, str, Any]]:
    """Every (class, JSON text, shared model) now cached; for the tests."""
    return [(cls, text, model) for (cls, text), model in _cache.items()]
