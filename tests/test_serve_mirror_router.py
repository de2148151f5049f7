"""The shadow mirror and the A/B router on their own: sampling by request id, agreement
per task, the comparison counted per shape, a stuck shadow that never holds the primary up
(bounded queue, drops counted), exact slots per weight, one key on one variant, and the
entity key read from either body shape. tests/test_serve_traffic.py runs them as processes.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from mlc.runtime.serve import request_id
from mlc.runtime.serve.router import SLOTS, Assigner, RouterVariant, body_key
from mlc.runtime.serve.settings import MirrorSettings
from mlc.runtime.serve.shadow import (
    DROP_QUEUE_FULL,
    WORKERS,
    Copy,
    ShadowMirror,
    ShadowStats,
    agreement,
    sampled,
)

# --- the mirror on its own -----------------------------------------------------------------------


def test_sampling_by_request_id_keeps_the_share_and_repeats_itself():
    ids = [request_id.new() for _ in range(20_000)]
    share = sum(sampled(i, 30) for i in ids) / len(ids)
    assert abs(share - 0.30) < 0.015  # 4.6 standard deviations of 20,000 draws
    assert [sampled(i, 30) for i in ids[:100]] == [sampled(i, 30) for i in ids[:100]]
    assert all(sampled(i, 100) for i in ids[:100])


def test_agreement_per_task():
    p = np.array([0.2, 0.7, 0.5, 0.9])
    assert agreement(p, np.array([0.4, 0.6, 0.49, 0.1]), "classification", 0).tolist() == [
        True, True, False, False]
    probs = np.array([[0.1, 0.9], [0.6, 0.4]])
    assert agreement(probs, np.array([[0.3, 0.7], [0.4, 0.6]]), "classification", 0
                     ).tolist() == [True, False]
    assert agreement(np.array([10.0, 20.0]), np.array([10.4, 21.0]), "regression", 0.5
                     ).tolist() == [True, False]
    assert not agreement(p, p[:2], "classification", 0).any()  # another shape


def test_the_comparison_counts_rows_of_every_shape():
    from prometheus_client import CollectorRegistry, generate_latest

    stats = ShadowStats("ep", "classification", 0.0)
    stats.compare(np.array([0.2, 0.8]), np.array([0.3, 0.1]))  # agree, disagree
    stats.compare(np.array([[0.1, 0.9]]), np.array([[0.2, 0.8]]))  # the same class
    stats.compare(np.array([0.6]), np.full(0, np.nan))  # an answer of no known shape
    registry = CollectorRegistry(auto_describe=False)
    registry.register(stats)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(generate_latest(registry).decode())
               for s in f.samples}
    assert samples[("mlc_shadow_compared_total", (("endpoint", "ep"),))] == 4
    assert samples[("mlc_shadow_agreed_total", (("endpoint", "ep"),))] == 2
    count = "mlc_shadow_prediction_value_count"
    assert samples[(count, (("endpoint", "ep"), ("role", "primary")))] == 4
    assert samples[(count, (("endpoint", "ep"), ("role", "shadow")))] == 3


def test_a_stuck_shadow_never_holds_the_primary_up(tmp_path):
    """The shadow accepts connections and never answers: offering copies still returns at
    once, the queue holds at most max_queue, and every copy beyond is dropped and counted."""

    async def scenario():
        async def hang(reader, writer):
            await asyncio.sleep(3600)

        server = await asyncio.start_server(hang, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stats = ShadowStats("ep", mirroring=True)
        mirror = ShadowMirror(MirrorSettings(url=f"http://127.0.0.1:{port}", percent=100,
                                             task="classification", tolerance=0.0, max_queue=16,
                                             timeout_seconds=30.0), stats)
        await mirror.start()
        await asyncio.sleep(0)
        slowest = 0.0
        for i in range(500):
            start = time.perf_counter()
            mirror.offer(Copy(f"r{i}", "/predict", b"{}", np.zeros(1)))
            slowest = max(slowest, time.perf_counter() - start)
            if i % 50 == 0:
                await asyncio.sleep(0.01)  # the workers take their first copies and hang
        queued = mirror.queue.qsize()
        await mirror.close()
        server.close()
        return stats, queued, slowest

    stats, queued, slowest = asyncio.run(scenario())
    assert queued == 16
    assert stats.mirrored == 16 + WORKERS  # the workers hold one each, stuck
    assert stats.dropped[DROP_QUEUE_FULL] == 500 - 16 - WORKERS
    assert stats.dropped["shutdown"] == 16  # still queued when the primary stopped
    print(f"\nslowest offer to a stuck shadow: {slowest * 1e6:.0f} us")


# --- the router on its own -----------------------------------------------------------------------

def test_weights_own_exact_shares_of_the_slots_and_a_key_one_variant():
    variants = (RouterVariant("a", 95, "http://a"), RouterVariant("off", 0, "http://o"),
                RouterVariant("b", 5, "http://b"))
    assigner = Assigner(variants, seed=1)

    class Slot(Assigner):  # every slot once, in order, in place of a hash
        def slot(self, key):
            return int(key)

    every = Slot(variants)
    owners = [every.assign(str(s)).name for s in range(SLOTS)]
    assert owners.count("a") == 9500 and owners.count("b") == 500 and "off" not in owners
    for i in range(200):
        assert len({assigner.assign(f"user-{i}").name for _ in range(3)}) == 1
    assert "off" not in {assigner.assign(None).name for _ in range(2000)}


def test_the_entity_key_is_read_from_either_body_shape():
    assert body_key(b'{"instances": [{"user_id": 42, "x": 1}, {"user_id": 7}]}',
                    "user_id") == "42"
    assert body_key(b'{"user_id": "u1", "x": 1}', "user_id") == "u1"
    assert body_key(b'{"inputs": {"user_id": [5, 6]}}', "user_id") == "5"
    assert body_key(json.dumps({"inputs": [{"name": "user_id", "shape": [1, 1],
                                            "datatype": "INT64", "data": [[9]]}]}).encode(),
                    "user_id") == "9"
    assert body_key(b'{"instances": [{"x": 1}]}', "user_id") is None
    assert body_key(b"not json", "user_id") is None
