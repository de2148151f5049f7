"""Determinism: the same input gives the same bytes, whatever the key order or hash seed."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from mlc.compiler.names import is_dns_label

from .conftest import ROOT
from .test_golden import PROJECTS, compiled_tree


def _shuffled(value, rng: random.Random):
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]  # list order is meaningful: keep it
    return value


def _copy_shuffled(src: Path, dst: Path, seed: int) -> None:
    rng = random.Random(seed)
    ruamel = YAML(typ="safe", pure=True)
    for path in [src / "ml.yaml", *sorted((src / "environments").glob("*.yaml"))]:
        data = ruamel.load(path.read_text())
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w") as handle:
            ruamel.dump(_shuffled(data, rng) if data else data, handle)


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_key_order_does_not_change_the_output(seed: int, tmp_path_factory):
    """ml.yaml with every mapping's keys shuffled compiles to the same files.

    Only the `mlc.dev/source` annotations and the runtime config record line numbers, which a
    reordering moves, so those lines are compared with the numbers masked.
    """
    folder = tmp_path_factory.mktemp("shuffled")
    _copy_shuffled(ROOT, folder, seed)
    expected = compiled_tree(ROOT)
    actual = compiled_tree(folder)
    assert sorted(actual) == sorted(expected)
    for path in expected:
        assert _mask(actual[path]) == _mask(expected[path]), path


def _mask(data: bytes) -> str:
    text = data.decode()
    text = re.sub(r'"line": \d+', '"line": N', text)
    text = re.sub(r'"source_hash": "[0-9a-f]+"', '"source_hash": H', text)
    return text


def test_hash_seed_does_not_change_the_output(tmp_path: Path):
    outputs = []
    for seed in ("0", "1", "12345"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-m", "mlc", "compile", "-C", str(ROOT),
                                 "--out", str(out)], env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes()
                        for p in sorted(out.rglob("*")) if p.is_file() and p.name != ".mlc.lock"})
    assert outputs[0] == outputs[1] == outputs[2]


def _objects(tree: dict[str, bytes]):
    for path, data in tree.items():
        if path.endswith((".yaml", ".yml")):
            for doc in yaml.safe_load_all(data):
                if isinstance(doc, dict) and "kind" in doc and "metadata" in doc:
                    yield path, doc


def test_every_emitted_name_is_a_dns_label():
    for name, project in PROJECTS.items():
        for path, doc in _objects(compiled_tree(project)):
            meta = doc["metadata"]
            assert is_dns_label(meta["name"]) or doc["kind"] in ("ClusterRole",), \
                f"{name}/{path}: {doc['kind']} name {meta['name']!r}"
            if "namespace" in meta:
                assert is_dns_label(meta["namespace"]), f"{name}/{path}"


def test_every_object_carries_the_common_labels_and_source():
    for name, project in PROJECTS.items():
        for path, doc in _objects(compiled_tree(project)):
            labels = doc["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/managed-by") == "mlc", f"{name}/{path}"
            for key in ("app.kubernetes.io/part-of", "app.kubernetes.io/name",
                        "app.kubernetes.io/version"):
                assert key in labels, f"{name}/{path}: {doc['kind']} lacks {key}"
            assert "mlc.dev/source" in doc["metadata"].get("annotations", {}), f"{name}/{path}"
