"""A running primary follows the `mirror` section of its mounted endpoint.json.

A pod reads its endpoint.json (MLC_ENDPOINT_CONFIG, a ConfigMap key in a projected volume)
once, at start. The mirror is the exception: when `rollout.shadowFirst` is first added, the
stable pods were started without one, and the shadow phase's gates read the comparison that
only they can make; a Rollout that aborts on it never replaces them, so they must pick the
mirror up where they run. The kubelet refreshes a ConfigMap volume mounted without subPath
(typically within a minute) by writing the new files into a fresh directory and swapping
the `..data` symlink, so a whole read of the file sees either the old or the new content;
a read that is not valid JSON, or a mirror section of the wrong shape, is ignored (the
current settings are kept) and counted.

Only the mirror is reloaded. The model, batching, prediction log and every other setting
stay as the pod started: the model is pinned in the pod template on purpose, and a change
of any of them rolls the pods.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path

from mlc import metrics as contract

from .settings import DEFAULT_CONFIG_RELOAD_SECONDS as RELOAD_SECONDS
from .settings import MirrorSettings

log = logging.getLogger("mlc.serve.config")

SECTION = "mirror"
APPLIED, INVALID = contract.CONFIG_RELOAD_RESULTS


def read_mirror(path: Path) -> MirrorSettings | None:
    """The mirror section of the config at `path`; raises ValueError (or OSError) on a file
    that cannot be read whole or holds no valid section."""
    doc = json.loads(path.read_bytes())
    if not isinstance(doc, dict):
        raise ValueError("the endpoint config is not a JSON object")
    try:
        settings = MirrorSettings.from_config(doc.get(SECTION))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"the `{SECTION}` section is not valid: {exc!r}") from None
    if settings is not None and not (0 < settings.percent <= 100 and settings.max_queue > 0
                                     and settings.timeout_seconds > 0):
        raise ValueError(f"the `{SECTION}` section is out of range: {settings}")
    return settings


class MirrorReloader:
    """Reads `path` every `interval` seconds and awaits `apply(settings)` when its mirror
    section differs from the one in force (None: no mirror). Each change applied, and each
    read ignored, is counted in `counts` (ServeMetrics.config_reloads: mlc_config_reloads_total
    by section and result)."""

    def __init__(self, path: Path, current: MirrorSettings | None,
                 apply: Callable[[MirrorSettings | None], Awaitable[None]],
                 counts: MutableMapping[tuple[str, str], int],
                 interval: float = RELOAD_SECONDS):
        self.path, self.current, self.apply = path, current, apply
        self.counts, self.interval = counts, interval
        self._stop = asyncio.Event()
        self._last_error: str | None = None

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
                return
            except TimeoutError:
                pass
            await self.check()

    def stop(self) -> None:
        """Ends `run` after the reload in progress, if one is (never half-way through)."""
        self._stop.set()

    async def check(self) -> None:
        try:
            settings = read_mirror(self.path)
        except (OSError, ValueError) as exc:
            self.counts[SECTION, INVALID] += 1
            error = str(exc)
            if error != self._last_error:  # once per cause, not every interval
                log.warning("ignoring %s as read (keeping the mirror in force): %s",
                            self.path, error)
            self._last_error = error
            return
        self._last_error = None
        if settings == self.current:
            return
        log.info("the mirror changed in %s: %s -> %s", self.path, _describe(self.current),
                 _describe(settings))
        try:
            await self.apply(settings)
        except Exception:  # a sender that will not start: the next read tries again
            log.exception("the mirror could not be changed")
            return
        self.current = settings
        self.counts[SECTION, APPLIED] += 1


def _describe(settings: MirrorSettings | None) -> str:
    return "none" if settings is None else f"{settings.percent}% to {settings.url}"
