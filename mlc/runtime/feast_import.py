"""Feast imported without typeguard's instrumentation of its classes: 1 s instead of 4.

Feast decorates its object classes (Entity, FeatureView, FeatureService, the data sources,
...) with typeguard's `@typechecked`. At import, that decorator fetches each module's source,
parses it, rewrites every annotated method with argument checks and compiles it again: about
three quarters of Feast's import, 2.8 of 4 CPU seconds here, paid by every step that reads
features (feast apply, materialise, the training data) in every pod. typeguard itself makes
the decorator a no-op when Python runs optimised (`python -O`), and calls it a development
check. The objects these steps build come from the repo that mlc generated from a validated
project, so the step runtime imports Feast as `-O` would for those decorators only:
`install()` wraps `typeguard.typechecked` so that a call from a `feast` module returns its
target unchanged, and every other caller gets typeguard's own decorator. Nothing else about
Feast changes (its own errors, its registry, its retrieval).

Set MLC_FEAST_TYPECHECKS=1 to keep Feast's checks (slower import, same results).
"""

from __future__ import annotations

import os
import sys

ENV = "MLC_FEAST_TYPECHECKS"
_MARK = "__mlc_feast_untyped__"


def install() -> bool:
    """Wrap typeguard's decorator before Feast is imported; False where that cannot hold
    (Feast already imported, no typeguard, or MLC_FEAST_TYPECHECKS=1)."""
    if os.environ.get(ENV, "") == "1":
        return False
    try:
        import typeguard
    except ImportError:
        return False
    current = typeguard.typechecked
    if getattr(current, _MARK, False):
        return True
    if "feast" in sys.modules:  # its classes are instrumented already
        return False
    real = current

    def typechecked(target=None, **options):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == "feast" or caller.startswith("feast."):
            if target is None:  # `@typechecked(...)`: a decorator that changes nothing
                return _unchanged
            return target
        return real(target, **options) if target is not None else real(**options)

    setattr(typechecked, _MARK, True)
    typechecked.__wrapped__ = real
    typechecked.__doc__ = real.__doc__
    typeguard.typechecked = typechecked
    return True


def _unchanged(target):
    return target
