"""The cyclic collector while compile_project's passes run (pipeline.settled_between_passes):
off inside, back as it was outside, also when a pass fails; and the frozen objects handed
back, so a long-lived process still collects their cycles."""

from __future__ import annotations

import gc

import pytest

from mlc.compiler import pipeline


def test_collector_off_inside_and_restored_after():
    assert gc.isenabled()
    threshold = gc.get_threshold()
    with pipeline.settled_between_passes() as settle:
        assert not gc.isenabled()
        settle()
        assert gc.get_freeze_count() > 0
        # validate's own setting inside the passes does not switch it back on
        with pipeline.fewer_young_collections():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == 0


def test_collector_restored_when_a_pass_raises():
    with pytest.raises(RuntimeError):
        with pipeline.settled_between_passes() as settle:
            settle()
            raise RuntimeError("a pass failed")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_collector_left_off_when_it_was_off():
    gc.disable()
    try:
        with pipeline.settled_between_passes():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_cycles_made_inside_are_collected_after():
    class Node:
        pass

    with pipeline.settled_between_passes() as settle:
        a, b = Node(), Node()
        a.other, b.other = b, a
        settle()  # frozen while alive, as the passes' results are
        del a, b
    assert gc.isenabled()
    assert gc.collect() >= 2  # the cycle left inside is found once the passes end
