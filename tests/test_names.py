"""Names that Kubernetes and Python accept: always valid, stable, distinct when shortened."""

from __future__ import annotations

import keyword

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc.compiler.names import (
    dns_1035_label,
    dns_label,
    dns_subdomain,
    is_dns_1035_label,
    is_dns_label,
    is_dns_subdomain,
    is_label_value,
    label_value,
    python_identifier,
    short_hash,
)

parts = st.lists(st.text(max_size=40), min_size=1, max_size=4).filter(any)
valid_label_text = st.from_regex(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", fullmatch=True)


@pytest.mark.parametrize(("args", "expected"), [
    (("fraud",), "fraud"),
    (("Fraud Detector", "v2"), "fraud-detector-v2"),
    (("my_project", "train", "XGBoost"), "my-project-train-xgboost"),
    (("--a..b__c--",), "a-b-c"),
    (("", "serve"), "serve"),
    (("2024-model",), "2024-model"),
])
def test_dns_label_examples(args: tuple[str, ...], expected: str) -> None:
    assert dns_label(*args) == expected


def test_dns_label_truncates_with_hash() -> None:
    long = "feature-" * 20
    name = dns_label(long, "prod")
    assert len(name) == 63
    assert name == long[:54].rstrip("-") + "-" + short_hash(long + "-prod")
    assert dns_label(long, "prod", max_len=20) == "feature-fea-" + short_hash(long + "-prod")
    # the cut never leaves a '-' before the one that joins the hash
    assert dns_label(long, max_len=17) == "feature-" + short_hash(long)


def test_dns_label_errors() -> None:
    with pytest.raises(ValueError):
        dns_label()
    with pytest.raises(ValueError):
        dns_label("")
    with pytest.raises(ValueError):
        dns_label("", "")
    with pytest.raises(ValueError):
        dns_label("x", max_len=64)
    with pytest.raises(ValueError):
        dns_label("x", max_len=9)
    with pytest.raises(TypeError):
        dns_label("x", 3)  # type: ignore[arg-type]


def test_input_without_usable_characters_gets_a_hash_name() -> None:
    assert dns_label("模型") == "x-" + short_hash("模型")
    assert dns_label("模型") != dns_label("数据")
    assert is_dns_label(dns_label("___"))


def test_dns_1035_label_starts_with_a_letter() -> None:
    assert dns_1035_label("2024-model") == "x-2024-model"
    assert dns_1035_label("fraud") == "fraud"


def test_dns_subdomain_examples() -> None:
    assert dns_subdomain("Feast.Registry", "prod") == "feast.registry-prod"
    assert dns_subdomain("a..b", ".c.") == "a.b.c"
    assert dns_subdomain("-a-.-b-") == "a.b"
    long = "x." * 200
    assert len(dns_subdomain(long)) <= 253
    assert dns_subdomain(long).endswith("x-" + short_hash(long))


def test_label_value_examples() -> None:
    assert label_value("") == ""
    assert label_value("v1.2.3_RC") == "v1.2.3_RC"
    assert label_value("sha256:abc") == "sha256-abc"
    assert label_value("_x_") == "x"
    assert label_value("a" * 64) == "a" * 54 + "-" + short_hash("a" * 64)
    assert label_value("!!!") == "x-" + short_hash("!!!")


@pytest.mark.parametrize(("text", "expected"), [
    ("learning_rate", "learning_rate"),
    ("learning-rate", "learning_rate"),
    ("2fast", "_2fast"),
    ("class", "class_"),
    ("None", "None_"),
    ("", "_"),
    ("café", "caf_"),
    ("match", "match"),
])
def test_python_identifier_examples(text: str, expected: str) -> None:
    assert python_identifier(text) == expected


@pytest.mark.parametrize(("text", "ok"), [
    ("a", True), ("a-b", True), ("0", True), ("-a", False), ("a-", False), ("A", False),
    ("a_b", False), ("a" * 63, True), ("a" * 64, False), ("", False), ("a.b", False),
])
def test_is_dns_label(text: str, ok: bool) -> None:
    assert is_dns_label(text) is ok


@pytest.mark.parametrize(("text", "ok"), [
    ("", True), ("A_b.c-D", True), ("_a", False), ("a_", False), ("a b", False),
    ("a" * 63, True), ("a" * 64, False), ("a/b", False),
])
def test_is_label_value(text: str, ok: bool) -> None:
    assert is_label_value(text) is ok


# ---------------------------------------------------------------------------------------
# Properties


@settings(max_examples=500)
@given(parts, st.integers(min_value=10, max_value=63))
def test_dns_label_always_valid_and_deterministic(args: list[str], max_len: int) -> None:
    name = dns_label(*args, max_len=max_len)
    assert is_dns_label(name)
    assert len(name) <= max_len
    assert name == dns_label(*args, max_len=max_len)
    assert is_dns_1035_label(dns_1035_label(*args, max_len=max_len))


@settings(max_examples=300)
@given(parts, st.integers(min_value=10, max_value=253))
def test_dns_subdomain_always_valid(args: list[str], max_len: int) -> None:
    name = dns_subdomain(*args, max_len=max_len)
    assert is_dns_subdomain(name)
    assert len(name) <= max_len
    assert name == dns_subdomain(*args, max_len=max_len)


@settings(max_examples=500)
@given(st.text(max_size=100))
def test_label_value_always_valid(text: str) -> None:
    value = label_value(text)
    assert is_label_value(value)
    assert value == label_value(text)
    if is_label_value(text):
        assert value == text


@settings(max_examples=300)
@given(valid_label_text.filter(lambda s: len(s) <= 63 and "--" not in s))
def test_valid_names_come_back_unchanged(text: str) -> None:
    assert dns_label(text) == text
    assert dns_subdomain(text) == text


@settings(max_examples=300)
@given(st.text(alphabet="abc0", min_size=1, max_size=10), st.text(max_size=20),
       st.text(max_size=20))
def test_names_differing_past_the_cut_stay_distinct(stem: str, a: str, b: str) -> None:
    if a == b:
        return
    prefix = ("x" + stem * 300)[:300]  # longer than every limit: a and b lie past the cut
    assert dns_label(prefix + a) != dns_label(prefix + b)
    assert dns_label(prefix, a) != dns_label(prefix, b)
    assert dns_subdomain(prefix * 3 + a) != dns_subdomain(prefix * 3 + b)
    assert label_value(prefix + a) != label_value(prefix + b)


@settings(max_examples=500)
@given(st.text(max_size=30))
def test_python_identifier_always_valid(text: str) -> None:
    name = python_identifier(text)
    assert name.isidentifier() and name.isascii()
    assert not keyword.iskeyword(name)
    assert name == python_identifier(text)
    if text.isidentifier() and text.isascii() and not keyword.iskeyword(text):
        assert name == text
