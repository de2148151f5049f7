"""The order `make test` hands the files to its xdist workers in (tests/conftest.py): the
longest files first, then the others with slow tests, then the rest; a file's tests stay
together and in their order, and a run without xdist keeps pytest's order."""

from __future__ import annotations

from types import SimpleNamespace

from .conftest import LONGEST_FIRST, ROOT, pytest_collection_modifyitems


def items(files: dict[str, list[bool]]) -> list[SimpleNamespace]:
    """Fake collected items: file -> whether each of its tests is marked slow."""
    return [SimpleNamespace(nodeid=f"{path}::test_{i}",
                            get_closest_marker=lambda name, s=slow: object() if s else None)
            for path, slows in files.items() for i, slow in enumerate(slows)]


COLLECTED = {
    "tests/test_a.py": [False] * 5,  # many quick tests
    "tests/test_b.py": [True],  # one slow test
    LONGEST_FIRST[1]: [True, True],
    "tests/test_c.py": [True] + [False] * 6,
    LONGEST_FIRST[0]: [True] * 3,
}


def test_under_xdist_the_longest_files_go_first_then_the_slow_ones():
    collected = items(COLLECTED)
    pytest_collection_modifyitems(SimpleNamespace(workerinput={"workerid": "gw0"}), collected)
    order = [i.nodeid for i in collected]
    files = list(dict.fromkeys(n.split("::")[0] for n in order))
    assert files == [LONGEST_FIRST[0], LONGEST_FIRST[1], "tests/test_c.py", "tests/test_b.py",
                     "tests/test_a.py"]
    for path, slows in COLLECTED.items():  # each file's tests together, in their order
        mine = [n for n in order if n.startswith(path + "::")]
        assert mine == [f"{path}::test_{i}" for i in range(len(slows))]
        first = order.index(mine[0])
        assert order[first:first + len(mine)] == mine


def test_without_xdist_the_order_is_pytest_s():
    collected = items(COLLECTED)
    before = [i.nodeid for i in collected]
    pytest_collection_modifyitems(SimpleNamespace(), collected)
    assert [i.nodeid for i in collected] == before


def test_make_test_keeps_this_order_and_the_listed_files_exist():
    # xdist would otherwise sort the files by their number of tests again
    assert "--dist loadfile --no-loadscope-reorder" in (ROOT / "Makefile").read_text()
    assert all((ROOT / path).is_file() for path in LONGEST_FIRST)
