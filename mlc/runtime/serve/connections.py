"""Bounds on the HTTP layer, below the app: how long a client may take to send its headers,
how long an idle keep-alive connection stays open, how many connections are served at once.

uvicorn bounds the idle time between requests (`timeout_keep_alive`), but arms no timer
before a request's headers are complete: a client that opens a socket and sends a header
byte now and then (slowloris) holds a connection for ever. The protocol class here adds
that timer, as nginx's `client_header_timeout` does: from the moment a connection opens, or
a keep-alive connection starts its next request, the headers must be complete within
`header_timeout`, or the connection is closed.

It also takes over uvicorn's connection limit (`limit_concurrency`), with the same rule
(past `max_connections` open connections, or requests in flight, a request is refused):
uvicorn answers those 503s itself, out of the app's sight, so the serving metrics never
counted them. Here the refused request goes to the app's `over_connection_limit` (a 503
with Retry-After, counted; server.py), or to uvicorn's own answer for an app without one.

Two things the app reads off the protocol: its `refuse_early(data)` sees a request's first
bytes before uvicorn parses them (admission.py), and may answer at once or, past the
refusal rate, have the connection parked with its `refusal_limit`; and every request's
scope carries `ARRIVED`, the time (`time.perf_counter()`) its first bytes were read, from
which the server counts a request's latency and its deadline: the time a request spends
waiting for the event loop, before uvicorn has even parsed it, is the server's too.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from .admission import PARK

# The scope key of a request's arrival: perf_counter() when its first bytes were read.
ARRIVED = "mlc.arrived"


@dataclass(frozen=True)
class HttpLimits:
    header_timeout: float = 10.0  # seconds to send a request's headers
    keep_alive: int = 5  # seconds an idle connection stays open between requests
    max_connections: int = 1000  # connections (and requests in flight) served at once

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> HttpLimits:
        env = os.environ if env is None else env
        d = cls()
        return cls(header_timeout=float(env.get("MLC_HEADER_TIMEOUT_SECONDS", d.header_timeout)),
                   keep_alive=int(env.get("MLC_KEEP_ALIVE_SECONDS", d.keep_alive)),
                   max_connections=int(env.get("MLC_MAX_CONNECTIONS", d.max_connections)))

    def uvicorn_options(self, http: str) -> dict:
        return {"http": bounded_protocol(http, self.header_timeout, self.max_connections),
                "timeout_keep_alive": self.keep_alive,
                "limit_concurrency": None}  # the protocol applies max_connections itself


def bounded_protocol(http: str, seconds: float,
                     max_connections: int | None = None) -> type[asyncio.Protocol]:
    """uvicorn's `http` protocol ("h11" or "httptools") with a header-read deadline and, when
    `max_connections` is given, the connection limit answered by the app."""
    from uvicorn.protocols.http.flow_control import service_unavailable

    if http == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class HeaderDeadline(base):
        def __init__(self, config, *args, **kwargs) -> None:
            super().__init__(config, *args, **kwargs)
            self._refuse_early = getattr(config.app, "refuse_early", None)
            self._refusal_limit = getattr(config.app, "refusal_limit", None)
            self._arrived: float | None = None  # the first bytes of the request being read
            if max_connections is None:
                return
            app = self.app
            refuse = getattr(config.app, "over_connection_limit", None) or service_unavailable

            async def bounded(scope, receive, send):
                # uvicorn's rule, checked where it would check it (the request's task is
                # already among `tasks` here, hence `>`)
                if (len(self.connections) >= max_connections
                        or len(self.tasks) > max_connections):
                    return await refuse(scope, receive, send)
                return await app(scope, receive, send)

            self.app = bounded

        def data_received(self, data: bytes) -> None:
            # Only at a request's start (a new connection, or the previous request read and
            # answered in full) can the request line be read off `data` (admission.py).
            cycle = self.cycle
            if cycle is None or (cycle.response_complete and not cycle.more_body):
                if self._arrived is None:
                    self._arrived = time.perf_counter()
                if self._refuse_early is not None:
                    refusal = self._refuse_early(data)
                    if refusal is PARK:
                        self._refusal_limit.park(self.transport)
                        return
                    if refusal is not None:
                        self.transport.write(refusal)
                        self.transport.close()
                        return
            self._data_received(data)

        # Both of uvicorn's protocols start a new `cycle` exactly when a request's headers
        # are complete, which is what ends the deadline; no parser callback is shared.
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._headers_of = None  # the cycle whose headers arrived last
            self._deadline: asyncio.TimerHandle | None = None
            self._arm()

        def _data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = self.cycle
            if cycle is not self._headers_of:
                self._headers_of = cycle
                self._disarm()
                if cycle is not None and self._arrived is not None:
                    # the request's task is created, not yet run: it will see this
                    cycle.scope[ARRIVED] = self._arrived
                self._arrived = None
            elif cycle is not None and cycle.response_complete:
                self._arm()  # the next request on a kept-alive connection has begun

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _headers_too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    HeaderDeadline.__name__ = f"{base.__name__}WithHeaderTimeout"
    return HeaderDeadline
