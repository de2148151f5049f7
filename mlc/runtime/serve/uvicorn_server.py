"""The uvicorn server that runs a ServeApp or the A/B router: the HTTP layer's bounds
(connections.py) and a SIGTERM that drains first.

On SIGTERM the app's readiness turns false at once, the server keeps answering for the
app's `drain_seconds` (time for the load balancer to notice), then stops accepting
connections and gives the requests in flight `shutdown_timeout_seconds` to finish.
"""

from __future__ import annotations

import time

from .connections import HttpLimits
from .settings import DEFAULT_SHUTDOWN_TIMEOUT

__all__ = ["make_server"]


def make_server(app, host: str, port: int, **config):
    """A uvicorn server for `app` (a ServeApp or the A/B router) whose SIGTERM first drains
    (see module docstring)."""
    import importlib.util

    import uvicorn

    class Server(uvicorn.Server):
        exit_at: float | None = None

        def handle_exit(self, sig, frame) -> None:
            app.begin_drain()
            delay = app.settings.drain_seconds
            if delay > 0 and self.exit_at is None:
                self.exit_at = time.monotonic() + delay
                return
            super().handle_exit(sig, frame)
            self._captured_signals.clear()  # a drained exit is a clean exit (status 0)

        async def on_tick(self, counter: int) -> bool:
            if self.exit_at is not None and time.monotonic() >= self.exit_at:
                self.should_exit = True
            return await super().on_tick(counter)

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    options = {"lifespan": "on", "access_log": False, "log_level": "info",
               "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
               # requests in flight at the end of the drain get this long to finish
               "timeout_graceful_shutdown": getattr(app.settings, "shutdown_timeout_seconds",
                                                    DEFAULT_SHUTDOWN_TIMEOUT),
               **HttpLimits.from_env().uvicorn_options(http), **config}
    cfg = uvicorn.Config(app, host=host, port=port, **options)
    return Server(cfg)
