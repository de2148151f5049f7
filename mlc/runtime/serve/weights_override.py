"""The A/B guard's override, as the router applies it: stopped variants get no traffic.

The guard (mlc/runtime/ab_guard.py) writes the variants it stopped into a ConfigMap; the
router pods mount it (optional: it has no data until a guard run writes some), and the
kubelet replaces the mounted file when the ConfigMap changes, within about a minute. So the
router reads the file again every `poll_seconds`, not once at start as it reads router.json.

A stop names the model the variant served when it was stopped. It applies only while
router.json still names that model: a new version of the variant in ml.yaml brings it back,
with no one clearing the ConfigMap by hand. The baseline is never stopped.

Keys stay where they were: a key assigned to a live variant keeps it; only the keys of a
stopped variant are hashed again, over the live variants by their weights, so the live
variants' shares are ml.yaml's weights renormalised over them.

Whatever the file holds, the router keeps serving: a missing file is no override; a file it
cannot read, or an entry naming an unknown variant, the baseline or every variant, leaves
that part out (ml.yaml's weights stand) and is counted in mlc_router_override_problems_total.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlc import metrics as contract

from .metrics import family, label_values

log = logging.getLogger("mlc.serve.router")

MISSING, MALFORMED, UNKNOWN, BASELINE, NONE_LEFT = (
    "missing", "malformed", "unknown-variant", "baseline", "no-variant-left")
PROBLEMS = (MISSING, MALFORMED, UNKNOWN, BASELINE, NONE_LEFT)
DEFAULT_POLL_SECONDS = 5.0
_REHASH_SALT = b"\x00mlc-ab-guard"  # a second, independent hash for a stopped arm's keys


@dataclass(frozen=True)
class GuardSettings:
    """The router's `guard` settings (backends/serving/ab_guard.py writes them)."""

    override: str  # the mounted override file
    baseline: str
    models: dict[str, str]  # variant -> the model URI router.json's variant serves
    poll_seconds: float = DEFAULT_POLL_SECONDS

    @classmethod
    def from_config(cls, doc: dict[str, Any] | None) -> GuardSettings | None:
        if not doc:
            return None
        return cls(override=doc["override"], baseline=doc["baseline"],
                   models=dict(doc["models"]),
                   poll_seconds=float(doc.get("poll_seconds", DEFAULT_POLL_SECONDS)))


def stopped_variants(text: str | None, settings: GuardSettings, live: list[str]
                     ) -> tuple[frozenset[str], list[str]]:
    """(the variants the override stops, the problems found) for the file's text (None:
    no file). `live` are the variants with weight, in router.json's order."""
    if text is None:
        return frozenset(), [MISSING]
    try:
        doc = json.loads(text) if text.strip() else {}
        entries = doc.get("stopped", {}) if isinstance(doc, dict) else None
        if not isinstance(entries, dict):
            raise ValueError("`stopped` is not a mapping")
    except ValueError as exc:
        log.warning("the A/B guard's override is unreadable, weights stay as ml.yaml has "
                    "them: %s", exc)
        return frozenset(), [MALFORMED]
    problems, stopped = [], set()
    for name, entry in sorted(entries.items()):
        if name not in live:
            problems.append(UNKNOWN)
        elif name == settings.baseline:
            problems.append(BASELINE)
        elif not isinstance(entry, dict) or entry.get("model") != settings.models.get(name):
            # stopped on another model: a new version in ml.yaml ends the stop (no problem)
            log.info("variant %s was stopped on another model; it serves again", name)
        else:
            stopped.add(name)
    if stopped and stopped >= set(live):
        return frozenset(), [*problems, NONE_LEFT]
    return frozenset(stopped), problems


class GuardedAssigner:
    """An Assigner's choice, with the override's stopped variants taken out."""

    def __init__(self, assigner, settings: GuardSettings, endpoint: str,
                 clock: Callable[[], float] = time.monotonic, seed: int | None = None):
        self.assigner = assigner
        self.settings = settings
        self.endpoint = endpoint
        self.clock = clock
        self.live = [v.name for v in assigner.variants]
        self.stopped: frozenset[str] = frozenset()
        self.problems = dict.fromkeys(PROBLEMS, 0)
        self._text: object = object()  # never equal to a file's text: the first poll loads
        self._next_poll = 0.0
        self._rest: list = []
        self._rest_ends: list[int] = []
        self._random = random.Random(seed)

    def poll(self) -> None:
        now = self.clock()
        if now < self._next_poll:
            return
        self._next_poll = now + self.settings.poll_seconds
        try:
            text: str | None = Path(self.settings.override).read_text(encoding="utf-8")
        except FileNotFoundError:
            text = None
        except (OSError, UnicodeDecodeError) as exc:
            text = f"\x00unreadable: {exc}"  # counted as malformed, once per change
        if text == self._text:
            return
        self._text = text
        stopped, problems = stopped_variants(text, self.settings, self.live)
        for p in problems:
            self.problems[p] += 1
        if stopped != self.stopped:
            log.warning("A/B guard: variants stopped now: %s",
                        ", ".join(sorted(stopped)) or "none")
        self._apply(stopped)

    def _apply(self, stopped: frozenset[str]) -> None:
        self.stopped = stopped
        self._rest = [v for v in self.assigner.variants if v.name not in stopped]
        total, self._rest_ends = 0, []
        for v in self._rest:
            total += v.weight
            self._rest_ends.append(total)

    def assign(self, key: str | None):
        self.poll()
        chosen = self.assigner.assign(key)
        if chosen.name not in self.stopped:
            return chosen
        if key is None:
            point = self._random.randrange(self._rest_ends[-1])
        else:
            digest = hashlib.blake2b(key.encode("utf-8") + _REHASH_SALT, digest_size=8).digest()
            point = int.from_bytes(digest, "big") % self._rest_ends[-1]
        return self._rest[bisect.bisect_right(self._rest_ends, point)]

    def collect(self) -> Iterator:
        stopped = family(contract.ROUTER_STOPPED)
        for name in sorted(self.live):
            stopped.add_metric(label_values(contract.ROUTER_STOPPED, endpoint=self.endpoint,
                                            variant=name), int(name in self.stopped))
        yield stopped
        problems = family(contract.ROUTER_OVERRIDE_PROBLEMS)
        for reason, n in sorted(self.problems.items()):
            problems.add_metric(label_values(contract.ROUTER_OVERRIDE_PROBLEMS,
                                             endpoint=self.endpoint, reason=reason), n)
        yield problems

    def describe(self):
        return []


@dataclass
class Unguarded:
    """The router without a guard: the assigner as it is, no extra metrics."""

    assigner: Any
    stopped: frozenset[str] = field(default_factory=frozenset)

    def assign(self, key: str | None):
        return self.assigner.assign(key)


def guarded(assigner, settings: GuardSettings | None, endpoint: str, registry):
    """The router's hook: the assigner, with the guard's override applied when it has one."""
    if settings is None:
        return Unguarded(assigner)
    out = GuardedAssigner(assigner, settings, endpoint)
    registry.register(out)
    return out
