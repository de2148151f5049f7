"""The progress display of `mlc run`: one line per step, with its status and duration.

On a terminal the running step's line shows a spinner and the time so far, redrawn in place;
elsewhere (CI logs, a pipe) each line is printed once, when the step ends. Steps print
into their own log files meanwhile (see run.py), so nothing else writes to the screen.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# `drift` and `waiting` are findings, not failures: a drift check that found drift did its
# job (the report says which features), a verdict without enough labels is asked again later
SYMBOLS = {"ok": "✓", "failed": "✗", "skipped": "-", "drift": "!", "waiting": "…"}
ASCII = {"ok": "ok", "failed": "FAILED", "skipped": "skipped", "drift": "DRIFT",
         "waiting": "WAITING"}


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _own_stdout() -> TextIO:
    """A stream of our own on the terminal: while a step runs, file descriptor 1 points at
    the step's log (run.py), but the progress lines must still reach the screen."""
    try:
        fd = os.dup(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not backed by a descriptor (a test's)
        return sys.stdout
    return open(fd, "w", buffering=1, encoding=sys.stdout.encoding or "utf-8",
                errors="replace")


class Progress:
    """Where `mlc run` reports; writes to `out` (a terminal, or anything else)."""

    def __init__(self, out: TextIO | None = None, *, tty: bool | None = None, width: int = 24):
        self.out = out or _own_stdout()
        self.tty = self.out.isatty() if tty is None else tty
        self.tty = self.tty and os.environ.get("TERM") != "dumb"
        self.width = width
        self._lock = threading.Lock()
        self._running: tuple[str, float] | None = None
        self._drawn = False  # the spinner's line is on the screen, to be cleared
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- free text --------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        with self._lock:
            self._clear()
            self.out.write(text + "\n")
            self.out.flush()

    def section(self, title: str) -> None:
        self.say(title)

    # -- steps ------------------------------------------------------------------------

    def start(self, name: str) -> None:
        self._running = (name, time.monotonic())
        if self.tty:
            self._stop.clear()
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()

    def finish(self, status: str, detail: str = "") -> float:
        """End the running step with `status` (a key of SYMBOLS); returns its seconds."""
        assert self._running is not None
        name, started = self._running
        seconds = time.monotonic() - started
        self._end_spinner()
        self._running = None
        self.line(name, status, seconds, detail)
        return seconds

    def line(self, name: str, status: str, seconds: float | None = None,
             detail: str = "") -> None:
        mark = SYMBOLS[status] if self.tty else ASCII[status]
        took = _duration(seconds) if seconds is not None else ""
        text = f"  {mark:<7} {name:<{self.width}} {took:>7}"
        if detail:
            text += f"  {detail}"
        self.say(text.rstrip())

    def block(self, text: str, indent: int = 10) -> None:
        """A step's report (a failure's explanation), indented under its line."""
        for row in text.rstrip().splitlines():
            self.say(" " * indent + row)

    # -- the spinner ------------------------------------------------------------------

    def _spin(self) -> None:
        frame = 0
        while not self._stop.wait(0.1):
            running = self._running
            if running is None:
                return
            name, started = running
            with self._lock:
                glyph = SPINNER[frame % len(SPINNER)]
                self.out.write(f"\r  {glyph:<7} {name:<{self.width}} "
                               f"{_duration(time.monotonic() - started):>7}")
                self.out.flush()
                self._drawn = True
            frame += 1

    def _end_spinner(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _clear(self) -> None:
        if self._drawn:
            self.out.write("\r\033[K")
            self._drawn = False
