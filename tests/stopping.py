"""Stopping a test's server processes together: each drains for its `drain_seconds` after
SIGTERM (as a pod does), and one after another a test waited for every drain in turn."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def stop_all(processes: Iterable[Any]) -> list[Any]:
    """Each one's `stop()` at once, in threads; their results in the given order. The first
    exception (if any) is raised after all were stopped."""
    processes = list(processes)
    if not processes:
        return []
    with ThreadPoolExecutor(len(processes)) as pool:
        futures = [pool.submit(p.stop) for p in processes]
    return [f.result() for f in futures]
