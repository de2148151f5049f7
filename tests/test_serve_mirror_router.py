"""The shadow mirror and the A/B router on their own: sampling by request id, agreement
per task, the comparison counted per shape, exact slots per weight, one key on one variant,
and the entity key read from either body shape. tests/test_mirror_sender.py runs the
mirror's hand-over and sender process; tests/test_serve_traffic.py runs both as servers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlc.runtime.serve import mirror_counts, request_id
from mlc.runtime.serve.mirror_compare import Comparison
from mlc.runtime.serve.router import SLOTS, Assigner, RouterVariant, body_key
from mlc.runtime.serve.shadow import ShadowStats, agreement, sampled

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
    """The sender's comparison, exported by the primary's collector from the shared counts."""
    from prometheus_client import CollectorRegistry, generate_latest

    stats = ShadowStats("ep", "classification", 0.0, mirroring=True)
    comparison = Comparison(stats.counts, "classification", 0.0)
    answer = json.dumps
    comparison.add(200, 0.01, answer({"predictions": [0.2, 0.8]}).encode(),
                   answer({"predictions": [0.3, 0.1]}).encode())  # agree, disagree
    comparison.add(200, 0.02, answer({"predictions": [[0.1, 0.9]]}).encode(),
                   answer({"outputs": [{"name": "p", "shape": [1, 2], "datatype": "FP64",
                                        "data": [0.2, 0.8]}]}).encode())  # the same class
    comparison.add(200, 0.03, answer({"predictions": [0.6]}).encode(), b"not json")
    comparison.add(503, 0.001, b"{}", b"{}")  # an error answer is counted, not compared
    comparison.add(0, None, b"{}", None)  # no answer at all
    assert stats.counts.snapshot()[mirror_counts.COMPARED] == 0  # counted in batches
    comparison.flush()
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
    responses = "mlc_shadow_responses_total"
    assert samples[(responses, (("code", "200"), ("endpoint", "ep")))] == 3
    assert samples[(responses, (("code", "503"), ("endpoint", "ep")))] == 1
    assert samples[(responses, (("code", "error"), ("endpoint", "ep")))] == 1
    duration = "mlc_shadow_duration_seconds"
    assert samples[(duration + "_count", (("endpoint", "ep"),))] == 4
    assert samples[(duration + "_sum", (("endpoint", "ep"),))] == pytest.approx(0.061)
    assert samples[(duration + "_bucket", (("endpoint", "ep"), ("le", "0.025")))] == 3
    assert samples[("mlc_shadow_sender_restarts_total", (("endpoint", "ep"),))] == 0


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
