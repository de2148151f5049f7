"""Property-based checks of the value types (mlc/schema/types.py): whatever a check accepts is
something the consumer can use (a finite quantity, a duration that fits Feast's timedelta and
an int64 of seconds, a cron expression whose every field selects at least one time), and
whatever it cannot use is refused with its own error, never an exception.
"""

from __future__ import annotations

import math
import re
import string
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from mlc.schema.types import (
    MAX_DURATION_SECONDS,
    MAX_QUANTITY,
    Cron,
    DnsLabel,
    Duration,
    EnvVarName,
    LabelKey,
    LabelValue,
    Quantity,
    Seconds,
    SecretKey,
    cron_problem,
    duration_seconds,
    quantity_value,
)

DURATION = TypeAdapter(Duration)
SECONDS = TypeAdapter(Seconds)
QUANTITY = TypeAdapter(Quantity)
CRON = TypeAdapter(Cron)

UNITS = ("ms", "s", "m", "h", "d", "w")
# ASCII digits plus digits of other scripts and superscripts, which `str.isdigit()` accepts
DIGITS = st.sampled_from("0123456789" + "\u0660\u0663\u06f5\u0967\uff11\u00b3")
duration_text = st.lists(st.tuples(st.integers(0, 10**12), st.sampled_from(UNITS)),
                         min_size=1, max_size=4).map(
    lambda parts: "".join(f"{n}{u}" for n, u in parts))


def _accepted(adapter: TypeAdapter, value) -> bool:
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        assert all(e["type"].startswith("mlc_") for e in exc.errors()), exc
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.one_of(duration_text, st.text(string.digits + "".join(UNITS) + " .-", max_size=12),
                 st.lists(st.one_of(DIGITS, st.sampled_from(UNITS)), max_size=8).map("".join)))
def test_an_accepted_duration_fits_every_consumer(text):
    if not _accepted(DURATION, text):
        return
    assert text.isascii()
    seconds = duration_seconds(text)
    assert 0 < seconds <= MAX_DURATION_SECONDS
    timedelta(seconds=seconds)  # the generated Feast code builds one; it must not overflow
    if _accepted(SECONDS, text):
        assert seconds >= 1 and seconds == int(seconds) and int(seconds) < 2**63


@given(st.integers(1, 999))
def test_sub_second_durations_are_refused_where_seconds_are_counted(ms):
    assert _accepted(DURATION, f"{ms}ms")
    assert not _accepted(SECONDS, f"{ms}ms")
    assert _accepted(SECONDS, f"1s{ms}ms") is False


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.from_regex(r"[0-9]{1,400}(\.[0-9]{1,5})?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]{1,4})?",
                  fullmatch=True),
    st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70)))
def test_an_accepted_quantity_is_finite_and_bounded(value):
    if isinstance(value, float) and not math.isfinite(value):
        pass  # the loader refuses these before validation; the type must not crash on them
    if not _accepted(QUANTITY, value):
        return
    amount = quantity_value(str(value))
    assert math.isfinite(amount) and 0 < amount <= MAX_QUANTITY


# ---------------------------------------------------------------------------------------
# cron, against an independent expansion of each field as Argo's cron library reads it

FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _expand(field: str, low: int, high: int) -> set[int]:
    chosen: set[int] = set()
    for item in field.split(","):
        base, _, step = item.partition("/")
        every = int(step) if step else 1
        if base in ("*", "?"):
            first, last = low, high
        elif "-" in base:
            first, last = (int(x) for x in base.split("-"))
        else:
            first = int(base)
            last = high if step else first
        chosen.update(range(first, last + 1, every))
    return chosen


number = st.integers(0, 70).map(str)
item = st.one_of(
    st.just("*"), number,
    st.tuples(number, number).map("-".join),
    st.tuples(st.one_of(st.just("*"), number, st.tuples(number, number).map("-".join)),
              st.integers(0, 70)).map(lambda t: f"{t[0]}/{t[1]}"))
cron_field = st.lists(item, min_size=1, max_size=3).map(",".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(cron_field, min_size=5, max_size=5))
def test_an_accepted_cron_selects_a_time_in_every_field(fields):
    expr = " ".join(fields)
    if cron_problem(expr) is not None:
        return
    for field, (low, high) in zip(fields, FIELDS, strict=True):
        values = _expand(field, low, high)
        assert values and all(low <= v <= high for v in values), (expr, field)
        for part in field.split(","):
            base = part.partition("/")[0]
            if "-" in base:
                a, b = (int(x) for x in base.split("-"))
                assert a <= b, expr


@given(st.integers(1, 59), st.integers(0, 58))
def test_reversed_ranges_are_refused(high, low):
    if low < high:
        assert cron_problem(f"{high}-{low} * * * *") is not None
        assert cron_problem(f"{low}-{high} * * * *") is None


@pytest.mark.parametrize("expr", ["*/0 * * * *", "@every 0s", "@every 10ms", "@every 1500ms",
                                  "\u0663 * * * *", "1 \u00b3 * * *", "* * * * */\u0661",
                                  "fri-mon * * * *", "0 0 * * fri-mon", "@every 99999w",
                                  "@reboot"])
def test_cron_refusals(expr):
    assert cron_problem(expr) is not None
    assert not _accepted(CRON, expr)


@pytest.mark.parametrize("expr", ["@every 1s", "@every 1m30s", "0 3 * * mon-fri",
                                  "*/15 0-6 1,15 * *", "0  3 * * *"])
def test_cron_acceptances(expr):
    assert cron_problem(expr) is None


# ---------------------------------------------------------------------------------------
# names, against Kubernetes' own rules (k8s.io/apimachinery/pkg/util/validation), written
# out here from its documentation rather than taken from mlc

def _k8s_dns1123_label(v: str) -> bool:
    return len(v) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", v) is not None


def _k8s_dns1123_subdomain(v: str) -> bool:
    return len(v) <= 253 and all(_k8s_dns1123_label(p) for p in v.split("."))


def _k8s_qualified_name(v: str) -> bool:  # label keys, toleration keys
    prefix, slash, name = v.rpartition("/")
    if slash and not (prefix and _k8s_dns1123_subdomain(prefix)):
        return False
    return 0 < len(name) <= 63 and re.fullmatch(
        r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", name) is not None


def _k8s_label_value(v: str) -> bool:
    return v == "" or (len(v) <= 63 and re.fullmatch(
        r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", v) is not None)


def _no_chdir(v: str) -> bool:
    return v not in (".", "..") and not v.startswith("..")


def _k8s_config_map_key(v: str) -> bool:
    return len(v) <= 253 and re.fullmatch(r"[-._a-zA-Z0-9]+", v) is not None and _no_chdir(v)


def _k8s_env_var_name(v: str) -> bool:
    return re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", v) is not None and _no_chdir(v)


name_text = st.one_of(
    st.text(alphabet=st.sampled_from("aZ09-_./ \u0663é"), max_size=70),
    st.text(alphabet=st.sampled_from("ab-."), min_size=60, max_size=300),
    st.tuples(st.text(alphabet=st.sampled_from("ab-."), min_size=1, max_size=300),
              st.sampled_from(["/x", "/a.b", "/"])).map("".join),
    st.integers(60, 70).map(lambda n: "a" * n + ".b/x"),
    st.text(max_size=20))

RULES = [(DnsLabel, _k8s_dns1123_label), (LabelKey, _k8s_qualified_name),
         (LabelValue, _k8s_label_value), (SecretKey, _k8s_config_map_key),
         (EnvVarName, _k8s_env_var_name)]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(RULES))), name_text)
def test_an_accepted_name_passes_kubernetes_rules(which, text):
    kind, rule = RULES[which]
    if _accepted(TypeAdapter(kind), text):
        assert rule(text), (kind, text)


@pytest.mark.parametrize("text", [".", "..", "..x"])
def test_folder_steps_are_not_keys(text):
    assert not _accepted(TypeAdapter(SecretKey), text)
    assert not _accepted(TypeAdapter(EnvVarName), text)
