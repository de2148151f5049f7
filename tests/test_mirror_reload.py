"""A running primary follows the mirror section of its mounted endpoint.json
(mlc/runtime/serve/config_reload.py): the first rollout after `shadowFirst` is added finds
stable pods that were started without a mirror, and the shadow phase's gates can only pass
once those pods copy requests.

Real processes (tests/mirror_stand_in.py: the real server, a stand-in model): a primary
started with an endpoint.json that has no mirror and a shadow. The file is rewritten as the
kubelet refreshes a ConfigMap volume: the new content in a fresh timestamped directory, then
the `..data` symlink swapped to it. In order: the mirror is added (the share arrives,
the comparison series exist from 0 first), a malformed rewrite is ignored and counted, the
share and then the sender's settings change, the mirror is removed (copies stop, the sender
exits). Every rewrite also changes the model and batching, which stay as the pod started.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlc.runtime.serve import request_id
from mlc.runtime.serve.shadow import SCHEDULING_ENV, sampled

from .mirror_stand_in import FEATURES
from .test_mirror_sender import Server, _post, _settled, _value

RELOAD_SECONDS = 0.2
# Time for the reload to be seen: many intervals, on a machine the test run keeps busy.
SEEN_SECONDS = 10.0


class ConfigMapVolume:
    """A directory as the kubelet keeps a ConfigMap volume: `endpoint.json` a symlink into
    `..data`, itself a symlink to the current timestamped directory, swapped atomically."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir()
        self.path = root / "endpoint.json"
        self.generation = 0

    def write(self, text: str) -> None:
        self.generation += 1
        fresh = self.root / f"..2026_12_02_04_00_{self.generation:02d}.{os.getpid()}"
        fresh.mkdir()
        (fresh / "endpoint.json").write_text(text, encoding="utf-8")
        previous = (self.root / "..data").resolve() if (self.root / "..data").exists() else None
        swap = self.root / "..data_tmp"
        swap.symlink_to(fresh.name)
        os.replace(swap, self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/endpoint.json")
        if previous is not None:
            (previous / "endpoint.json").unlink()
            previous.rmdir()


def config(generation: int, mirror: dict | None) -> str:
    """The endpoint's config; the model and batching differ at each rewrite, and must not
    be picked up."""
    doc = {"role": "primary", "model_uri": f"models:/m/{generation}",
           "batching": {"max_batch_size": generation, "max_queue": 10 * generation}}
    if mirror is not None:
        doc["mirror"] = mirror
    return json.dumps(doc)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reload")
    volume = ConfigMapVolume(tmp / "config")
    volume.write(config(1, None))
    shadow = Server(tmp, "shadow")
    # every copy is counted: the sender takes its share of the CPU (see test_mirror_sender)
    primary = Server(tmp, "primary", "--config", str(volume.path), "--reload-seconds",
                     str(RELOAD_SECONDS), env={SCHEDULING_ENV: "normal"})
    yield primary, shadow, volume, {"url": shadow.url, "task": "classification",
                                    "tolerance": 0.0, "max_queue": 1000,
                                    "timeout_seconds": 2.0}
    for server in (primary, shadow):
        if server.proc.poll() is None:
            server.stop()


def _reloads(server: Server, result: str) -> float:
    return server.total("mlc_config_reloads_total", section="mirror", result=result)


def _wait_for(server: Server, result: str, count: float) -> None:
    deadline = time.time() + SEEN_SECONDS
    while _reloads(server, result) < count:
        assert time.time() < deadline, server.log()
        time.sleep(0.05)


def _send(primary: Server, prefix: str, n: int) -> list[str]:
    rows = np.random.default_rng(len(prefix)).normal(size=(n, len(FEATURES))).round(4)
    ids = [f"{prefix}-{i}" for i in range(n)]
    with httpx.Client(base_url=primary.url, timeout=10) as client:
        for rid, row in zip(ids, rows, strict=True):
            answer = _post(client, rid, row)
            assert answer.status_code == 200 and answer.headers[request_id.HEADER] == rid
            # the model as the pod started, whatever the config says now
            assert answer.json()["model_version"] == "1"
    return ids


def _arrived(shadow: Server) -> float:
    return shadow.total("mlc_requests_total", route="/predict", code="200")


def test_started_without_a_mirror_nothing_is_copied(servers):
    primary, shadow, _, _ = servers
    _send(primary, "before", 40)
    m = primary.metrics()
    assert _value(m, "mlc_config_reloads_total", result="applied") == 0
    assert _value(m, "mlc_config_reloads_total", result="invalid") == 0
    assert _value(m, "mlc_shadow_mirrored_total") == 0
    assert not any(n == "mlc_shadow_responses_total" for n, _ in m)
    assert _arrived(shadow) == 0
    assert primary.children() == []  # no sender


def test_an_added_mirror_is_followed_and_its_series_exist_from_0(servers):
    primary, shadow, volume, mirror = servers
    volume.write(config(2, {**mirror, "percent": 50}))
    _wait_for(primary, "applied", 1)
    m = primary.metrics()  # before any copy: what the gates read, at 0
    for code in ("200", "500", "error"):
        assert _value(m, "mlc_shadow_responses_total", code=code) == 0
    assert _value(m, "mlc_shadow_compared_total") == 0
    assert _value(m, "mlc_shadow_dropped_total", reason="queue_full") == 0
    assert _value(m, "mlc_shadow_prediction_value_count", role="shadow") == 0
    assert len(primary.children()) == 1  # the sender
    ids = _send(primary, "added", 200)
    share = [rid for rid in ids if sampled(rid, 50)]
    assert 60 < len(share) < 140
    m = _settled(primary)
    assert _value(m, "mlc_shadow_mirrored_total") == len(share)
    assert _value(m, "mlc_shadow_compared_total") == len(share)
    assert _arrived(shadow) == len(share)


def test_a_malformed_rewrite_is_ignored_and_counted(servers):
    primary, shadow, volume, mirror = servers
    before = _arrived(shadow)
    volume.write(config(3, {**mirror, "percent": 50})[:25])  # half written
    _wait_for(primary, "invalid", 1)
    volume.write(config(4, {**mirror, "percent": "half"}))  # a section of the wrong shape
    _wait_for(primary, "invalid", 2)
    assert _reloads(primary, "applied") == 1
    ids = _send(primary, "malformed", 100)
    share = [rid for rid in ids if sampled(rid, 50)]
    _settled(primary)
    assert _arrived(shadow) - before == len(share)  # the mirror in force, unchanged
    assert "ignoring" in primary.log()


def test_a_changed_share_and_sender_settings_are_followed(servers):
    primary, shadow, volume, mirror = servers
    [sender] = primary.children()
    volume.write(config(5, {**mirror, "percent": 100}))  # the share alone: the same sender
    _wait_for(primary, "applied", 2)
    assert primary.children() == [sender]
    before = _arrived(shadow)
    _send(primary, "all", 50)
    _settled(primary)
    assert _arrived(shadow) - before == 50
    volume.write(config(6, {**mirror, "percent": 100, "timeout_seconds": 3.0}))
    _wait_for(primary, "applied", 3)
    deadline = time.time() + SEEN_SECONDS
    while len(children := primary.children()) != 1 or children == [sender]:
        assert time.time() < deadline, primary.log()
        time.sleep(0.05)
    before = _arrived(shadow)
    _send(primary, "restarted", 50)
    m = _settled(primary)
    assert _arrived(shadow) - before == 50
    # the old sender drained: nothing lost, and no restart of a sender that died
    assert _value(m, "mlc_shadow_dropped_total") == 0
    assert _value(m, "mlc_shadow_sender_restarts_total") == 0


def test_a_removed_mirror_stops_the_copies_and_the_model_never_changed(servers):
    primary, shadow, volume, _ = servers
    volume.write(config(7, None))
    _wait_for(primary, "applied", 4)
    deadline = time.time() + SEEN_SECONDS
    while primary.children():  # the sender drained and exited
        assert time.time() < deadline, primary.log()
        time.sleep(0.05)
    mirrored, before = primary.total("mlc_shadow_mirrored_total"), _arrived(shadow)
    _send(primary, "removed", 50)
    time.sleep(0.3)
    assert _arrived(shadow) == before
    assert primary.total("mlc_shadow_mirrored_total") == mirrored
    # the counts stay (a counter never goes back)
    assert primary.total("mlc_shadow_compared_total") > 0
    assert primary.stop() == 0
    # loaded once, at start: no rewrite reached the model
    assert primary.log().count("serving m version 1") == 1


def test_the_mounted_config_is_followed_by_a_primary_only(tmp_path):
    """`python -m mlc.runtime serve`'s settings: the file MLC_ENDPOINT_CONFIG names is the
    one followed, by a primary (a shadow or an A/B variant has no mirror to follow)."""
    from mlc.compiler.diagnostics import Diagnostics
    from mlc.compiler.pipeline import check_environment
    from mlc.runtime.serve.server import ServeApp
    from mlc.runtime.serve.settings import CONFIG_RELOAD_SECONDS_ENV as RELOAD_SECONDS_ENV
    from mlc.runtime.serve.settings import settings_for_endpoint

    from .conftest import ROOT

    project = check_environment(ROOT, "prod", Diagnostics())
    config = tmp_path / "endpoint.json"
    config.write_text(json.dumps({"role": "primary"}))
    env = {"MLC_ENDPOINT_CONFIG": str(config), RELOAD_SECONDS_ENV: "2"}
    primary = settings_for_endpoint(project, "fraud-api", env=env)
    assert (primary.config_path, primary.config_reload_seconds) == (config, 2.0)
    assert ServeApp(primary).reloader.path == config
    assert settings_for_endpoint(project, "fraud-api", env={}).config_path is None
    config.write_text(json.dumps({"role": "shadow"}))
    assert ServeApp(settings_for_endpoint(project, "fraud-api", env=env)).reloader is None
    with pytest.raises(ValueError, match="above 0"):
        settings_for_endpoint(project, "fraud-api", env={**env, RELOAD_SECONDS_ENV: "0"})


@pytest.mark.parametrize("text", [
    "", "[1]", '{"mirror": {"url": "http://s"}}', '{"mirror": {"url": 3, "percent": 1, '
    '"task": "classification", "tolerance": 0, "max_queue": 1, "timeout_seconds": 1}}',
    '{"mirror": {"url": "http://s", "percent": 0, "task": "classification", "tolerance": 0, '
    '"max_queue": 1, "timeout_seconds": 1}}'],
    ids=["empty", "not-an-object", "missing-fields", "url-not-text", "percent-0"])
def test_a_read_that_is_not_a_mirror_section_is_refused(tmp_path, text):
    from mlc.runtime.serve.config_reload import read_mirror

    path = tmp_path / "endpoint.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        read_mirror(path)
