"""Redis connections as users write them, turned into the form Feast's Redis store reads.

Users (and every Redis provider's console) write a URL, `redis://[user][:password]@host:port/db`
or `rediss://...` for TLS; Feast 0.67 reads only `host:port,db=0,ssl=true,password=...`, splits
it at commas and JSON-decodes each value, and fails on a URL. Both forms are accepted and the
URL is rewritten before Feast reads the connection secret (feast_connection.py); ml.yaml
itself holds no connection (`connection_string` is a reserved option: the connection comes
only from `onlineStore.connectionSecret`).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_PORT = 6379


class BadRedisConnection(ValueError):
    pass


def is_url(value: str) -> bool:
    return value.strip().lower().startswith(("redis://", "rediss://"))


def _value(text: str, what: str) -> str:
    if "," in text:
        raise BadRedisConnection(f"the {what} holds a comma, which Feast's Redis connection "
                                 "string cannot carry")
    return json.dumps(text)  # Feast JSON-decodes values: a quoted string stays a string


def feast_connection_string(value: str) -> str:
    """`value` in Feast's form: a URL is rewritten, `host:port[,...]` is returned as is."""
    value = value.strip()
    if not is_url(value):
        return value
    try:
        url = urlsplit(value)
        port = url.port or DEFAULT_PORT
    except ValueError as exc:
        raise BadRedisConnection(f"not a Redis URL: {exc}") from exc
    host = url.hostname
    if not host:
        raise BadRedisConnection("the Redis URL names no host")
    if ":" in host:
        raise BadRedisConnection("Feast's Redis store cannot reach an IPv6 address; use a "
                                 "host name")
    parts = [f"{host}:{port}"]
    db = url.path.strip("/")
    if db:
        if not db.isdigit():
            raise BadRedisConnection(f"the Redis database must be a number, got `{db}`")
        parts.append(f"db={int(db)}")
    if url.scheme.lower() == "rediss":
        parts.append("ssl=true")
    if url.username:
        parts.append("username=" + _value(unquote(url.username), "user name"))
    if url.password is not None:
        parts.append("password=" + _value(unquote(url.password), "password"))
    for key, item in parse_qsl(url.query, keep_blank_values=True):
        if not key.replace("_", "").isalnum():
            raise BadRedisConnection(f"`{key}` is not a Redis connection setting")
        parts.append(f"{key}={_value(item, key)}")
    return ",".join(parts)
