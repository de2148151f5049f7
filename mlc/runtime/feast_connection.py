"""The store connection secrets, made readable by Feast before it reads feature_store.yaml.

feature_store.yaml says `connection_string: ${MLC_ONLINE_STORE_CONNECTION}` for a Redis online
store, and Feast pastes the variable into the YAML text before parsing it. A secret holding a
Redis URL is rewritten into Feast's own form (mlc/redis_connection.py), and exported
JSON-quoted, which YAML reads back as exactly that string whatever characters it holds.
Every place that opens the generated repo calls `prepare(repo)` first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlc.runtime import redis_connection
from mlc.runtime.step import StepFailed

ONLINE_ENV = "MLC_ONLINE_STORE_CONNECTION"


def prepare(repo: Path, environ: dict[str, str] | None = None) -> None:
    import yaml

    env = os.environ if environ is None else environ
    value = env.get(ONLINE_ENV)
    if not value or not redis_connection.is_url(value):
        return
    try:
        config = yaml.safe_load((Path(repo) / "feature_store.yaml").read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return  # Feast reports a missing or broken repo in its own words
    online = config.get("online_store") or {}
    if online.get("type") != "redis" or online.get("connection_string") != f"${{{ONLINE_ENV}}}":
        return
    try:
        env[ONLINE_ENV] = json.dumps(redis_connection.feast_connection_string(value))
    except redis_connection.BadRedisConnection as exc:
        raise StepFailed(f"the online store's connection secret ({ONLINE_ENV}) is not a "
                         f"usable Redis connection: {exc}") from exc
