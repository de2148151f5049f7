"""Value types of the ml.yaml language: names, quantities, durations, cron, images.

Each check raises a `PydanticCustomError` whose type is a stable diagnostic kind
(`mlc_name`, `mlc_quantity`, ...); `compiler/validate.py` maps kinds to codes, so the
wording lives here next to the rule and the code table lives in one place.
"""


import math
import posixpath
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from ..model_cache import CachedModel, Family
from .editor import (
    CRON_HINT,
    DNS_LABEL_HINT,
    DURATION_HINT,
    FIELD_HINT,
    FRACTION_HINT,
    IMAGE_HINT,
    LABEL_KEY_HINT,
    LABEL_VALUE_HINT,
    MEMORY_HINT,
    NAME_HINT,
    NAMESPACE_HINT,
    PERCENT_HINT,
    QUANTITY_HINT,
    SECONDS_HINT,
    SECRET_KEY_HINT,
    SOURCE_PATH_HINT,
    EditorHint,
    env_var_pattern,
    field_title,
    model_title,
)

# Every class of the language, built once and read back by later processes (model_cache.py)
SCHEMA_FAMILY = Family("schema", "mlc.schema", ["*"], docstrings=True)


class Spec(CachedModel, BaseModel):
    """Base of every ml.yaml model: camelCase keys, no unknown keys, no coercion, frozen."""

    __mlc_family__ = SCHEMA_FAMILY
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        populate_by_name=False,
        validate_default=False,
        field_title_generator=field_title,
        # a string under a field is its description (the JSON Schema's hover text); when the
        # family's cache file holds the descriptions, they come from there instead
        use_attribute_docstrings=not SCHEMA_FAMILY.hit,
        model_title_generator=model_title,
        defer_build=True,  # built when first used: from the cache file, or by pydantic
    )


@dataclass(frozen=True)
class _check:  # noqa: N801 - used as a function: _check(pattern, kind, what, example)
    """A pattern's check; an object rather than a closure, so that the built schema can be
    stored (model_cache.py)."""

    pattern: re.Pattern[str]
    kind: str
    what: str
    example: str

    def __call__(self, value: str) -> str:
        if not self.pattern.fullmatch(value):
            raise PydanticCustomError(self.kind, "invalid {what} `{value}`: expected {example}",
                                      {"what": self.what, "value": _shown(value),
                                       "example": self.example})
        return value


# Names of things declared in ml.yaml (models, endpoints, sources, ...). They become part of
# Kubernetes names (with `_` mapped to `-`) and of Python identifiers, so both must be possible.
NAME_RE = re.compile(r"[a-z]([a-z0-9_-]{0,61}[a-z0-9])?")
Name = Annotated[str, AfterValidator(_check(
    NAME_RE, "mlc_name", "name",
    "lowercase letters, digits, `-` or `_`, starting with a letter, at most 63 characters "
    "(e.g. `fraud-classifier`)")), NAME_HINT]

# Column and feature field names: they are Python identifiers in generated Feast code.
FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
FieldName = Annotated[str, AfterValidator(_check(
    FIELD_RE, "mlc_name", "field name", "a letter or `_` followed by letters, digits or `_` "
    "(e.g. `amount_avg_7d`)")), FIELD_HINT]

DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DnsLabel = Annotated[str, AfterValidator(_check(
    DNS_LABEL_RE, "mlc_name", "Kubernetes name",
    "a DNS-1123 label: lowercase letters, digits and `-`, at most 63 characters")),
    DNS_LABEL_HINT]

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
LABEL_KEY_RE = re.compile(rf"({_DNS_PREFIX})?{_LABEL_NAME}")
LABEL_VALUE_RE = re.compile(rf"({_LABEL_NAME})?")


def _label_key(value: str) -> str:
    prefix, _, _ = value.rpartition("/")
    if (not LABEL_KEY_RE.fullmatch(value) or len(prefix) > 253
            or any(len(part) > 63 for part in prefix.split("."))):
        raise PydanticCustomError(
            "mlc_label", "invalid label key `{value}`: expected an optional DNS prefix and `/`, "
            "then at most 63 letters, digits, `-`, `_` or `.` (e.g. `team` or `example.com/tier`)",
            {"value": value})
    return value


def _label_value(value: str) -> str:
    if not LABEL_VALUE_RE.fullmatch(value):
        raise PydanticCustomError(
            "mlc_label", "invalid label value `{value}`: expected at most 63 letters, digits, `-`, "
            "`_` or `.`, starting and ending with a letter or digit", {"value": value})
    return value


LabelKey = Annotated[str, AfterValidator(_label_key), LABEL_KEY_HINT]
LabelValue = Annotated[str, AfterValidator(_label_value), LABEL_VALUE_HINT]

def _namespace(value: str) -> str:
    value = _check(DNS_LABEL_RE, "mlc_key", "namespace", "a DNS-1123 label")(value)
    if value == "default" or value.startswith("kube-"):
        raise PydanticCustomError(
            "mlc_key", "namespace `{value}` is reserved: `default` and `kube-*` belong to the "
            "cluster itself (kube-system runs its control plane)", {"value": value})
    return value


# The namespace mlc creates and fills with the project's objects; pruning runs there.
ProjectNamespace = Annotated[str, AfterValidator(_namespace), NAMESPACE_HINT]

# Names of environment variables a container is given. Kubernetes checks them with this rule
# (IsEnvVarName); MLC_ and the few others below are the step contract's own, which would win
# over a user's variable of the same name, so such a variable is refused instead of dropped.
ENV_VAR_RE = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]{0,254}")
_CONTRACT_ENV = frozenset({"HOME", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN",
                           "MASTER_ADDR", "MASTER_PORT", "JOBSET_NAME"})
ENV_VAR_HINT = EditorHint(env_var_pattern(_CONTRACT_ENV), ("BATCH_SIZE", "LOG_LEVEL"),
                          "an environment variable name: letters, digits, `_`, `-` or `.`, "
                          "not starting with a digit, and none that mlc sets itself (HOME, "
                          "MLFLOW_*, MLC_*, PET_*, MASTER_*)")


def _not_a_folder_step(value: str, what: str) -> str:
    # Kubernetes refuses `.`, `..` and a leading `..` in keys and variable names: they are
    # used as file names when mounted
    if value in (".", "..") or value.startswith(".."):
        raise PydanticCustomError("mlc_key", "invalid {what} `{value}`: it may not be `.` or "
                                  "`..` or start with `..`", {"what": what, "value": value})
    return value


def _env_var_name(value: str) -> str:
    value = _check(ENV_VAR_RE, "mlc_key", "environment variable name",
                   "letters, digits, `_`, `-` or `.`, not starting with a digit "
                   "(e.g. `BATCH_SIZE`)")(value)
    _not_a_folder_step(value, "environment variable name")
    if value in _CONTRACT_ENV or value.startswith(("MLC_", "PET_")):
        raise PydanticCustomError(
            "mlc_key", "environment variable `{value}` is set by mlc itself (the step "
            "contract: HOME, MLFLOW_*, MLC_*, PET_*, MASTER_*); choose another name",
            {"value": value})
    return value


EnvVarName = Annotated[str, AfterValidator(_env_var_name), ENV_VAR_HINT]


def _secret_key_step(value: str) -> str:
    return _not_a_folder_step(value, "secret key")


# A key inside a Kubernetes Secret or ConfigMap (IsConfigMapKey).
SECRET_KEY_RE = re.compile(r"[-._a-zA-Z0-9]{1,253}")
SecretKey = Annotated[str, AfterValidator(_check(
    SECRET_KEY_RE, "mlc_key", "secret key", "at most 253 letters, digits, `-`, `_` or `.` "
    "(e.g. `password`)")), AfterValidator(_secret_key_step),
    SECRET_KEY_HINT]


_URI = re.compile(r"[a-z][a-z0-9+.-]*://\S+")


def _source_path(value: str) -> str:
    if _URI.fullmatch(value):
        return value
    if value.startswith(("/", "~")) or re.match(r"[A-Za-z]:", value):
        problem = "an absolute path"
    elif posixpath.normpath(value.replace("\\", "/")).split("/")[0] == "..":
        problem = "a path that leaves the project folder"
    else:
        return value
    raise PydanticCustomError(
        "mlc_path", "`{value}` is {problem}: local data paths are relative to ml.yaml and stay "
        "inside the project (in a cluster, only the run's volume is there)",
        {"value": _shown(value), "problem": problem})


# Where a source's data is: an object-store URI, or a path inside the project folder.
SourcePath = Annotated[str, AfterValidator(_source_path), SOURCE_PATH_HINT]


# Kubernetes resource quantities. CPU may be written as a number (2, 0.5) or a string ("500m").
# `[0-9]`, not `\d`: `\d` also matches other scripts' digits, which Kubernetes refuses.
QUANTITY_RE = re.compile(r"([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
# Kubernetes keeps quantities in an int64 of milli-units where it can; no node has more.
MAX_QUANTITY = 2.0**63 / 1000


def _quantity(value: str | int | float) -> str:
    text = str(value)
    if isinstance(value, bool) or not QUANTITY_RE.fullmatch(text) or quantity_value(text) <= 0:
        raise PydanticCustomError(
            "mlc_quantity", "invalid quantity `{value}`: expected a positive Kubernetes quantity "
            "such as `500m`, `2`, `512Mi` or `16Gi`", {"value": _shown(text)})
    if quantity_value(text) > MAX_QUANTITY:
        raise PydanticCustomError(
            "mlc_quantity", "quantity `{value}` is too large: no machine has that much",
            {"value": _shown(text)})
    return text


def quantity_value(text: str) -> float:
    """The numeric value of a quantity string, in base units (cores or bytes); infinity for
    one too large to represent (the caller refuses it)."""
    m = QUANTITY_RE.fullmatch(text)
    if not m:
        raise ValueError(text)
    number, suffix = float(m.group(1)), m.group(3) or ""
    if suffix in _BINARY:
        scale = float(_BINARY[suffix])
    elif suffix.startswith("e"):
        exponent = int(suffix[1:])
        scale = 10.0 ** exponent if exponent <= 300 else math.inf
    else:
        scale = _DECIMAL[suffix]
    value = number * scale
    return value if math.isfinite(value) else math.inf


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


Quantity = Annotated[str | int | float, AfterValidator(_quantity), QUANTITY_HINT]


def _memory(value: str | int | float) -> str:
    text = _quantity(value)
    if text.endswith("m") or quantity_value(text) < 1024 * 1024:
        raise PydanticCustomError(
            "mlc_quantity", "invalid memory quantity `{value}`: expected bytes with a unit, at "
            "least 1Mi (e.g. `512Mi` or `4Gi`); a bare number means bytes", {"value": text})
    return text


MemoryQuantity = Annotated[str | int, AfterValidator(_memory), MEMORY_HINT]

# Durations: a number and a unit, or several ("1h30m"). Argo, Prometheus and Feast all read them.
DURATION_RE = re.compile(r"([0-9]+(ms|s|m|h|d|w))+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Ten years: beyond any window, TTL or cooldown, and far inside Python's timedelta, Go's
# time.Duration (292 years) and every int64 count of seconds the generated files hold.
MAX_DURATION_SECONDS = 3650 * 86400


def duration_seconds(text: str) -> float:
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w)", text))


def _duration(value: str) -> str:
    if not DURATION_RE.fullmatch(value) or duration_seconds(value) <= 0:
        raise PydanticCustomError(
            "mlc_duration", "invalid duration `{value}`: expected a number and a unit "
            "(ms, s, m, h, d, w), e.g. `30s`, `15m`, `1h30m` or `7d`", {"value": _shown(value)})
    if duration_seconds(value) > MAX_DURATION_SECONDS:
        raise PydanticCustomError(
            "mlc_duration", "duration `{value}` is longer than ten years (3650d)",
            {"value": _shown(value)})
    return value


def _whole_seconds(value: str) -> str:
    seconds = duration_seconds(value)
    if seconds < 1 or seconds != int(seconds):
        raise PydanticCustomError(
            "mlc_duration", "duration `{value}` is not a whole number of seconds: Kubernetes and "
            "Argo count this setting in seconds (write e.g. `1s` or `90s`)", {"value": value})
    return value


Duration = Annotated[str, AfterValidator(_duration), DURATION_HINT]
# For settings the cluster reads as an integer count of seconds (deadlines, pauses, TTLs): a
# sub-second value there would round to 0, which means "no deadline" or "pause forever".
Seconds = Annotated[str, AfterValidator(_duration), AfterValidator(_whole_seconds),
                    SECONDS_HINT]

# Cron: five fields as Argo's CronWorkflow and Kubernetes read them, or a @-macro.
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))
_CRON_NAMES = {
    3: {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    4: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}


def cron_problem(expr: str) -> str | None:
    """Why `expr` is not a valid cron expression, or None when it is."""
    if expr in _CRON_MACROS:
        return None
    every = re.fullmatch(r"@every (([0-9]+(ms|s|m|h))+)", expr)
    if every:
        # Argo's cron library rounds anything under a second up to one, and drops fractions
        seconds = duration_seconds(every.group(1))
        if seconds < 1 or seconds != int(seconds):
            return "`@every` needs a whole number of seconds, at least `1s`"
        if seconds > MAX_DURATION_SECONDS:
            return "`@every` is longer than ten years"
        return None
    if expr.startswith("@"):
        return f"unknown macro `{expr.split()[0]}`"
    parts = expr.split()
    if len(parts) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), found {len(parts)}"
    for index, (part, (label, low, high)) in enumerate(zip(parts, _CRON_FIELDS, strict=True)):
        names = _CRON_NAMES.get(index, {})
        for item in part.split(","):
            problem = _cron_item(item, label, low, high, names)
            if problem:
                return problem
    return None


def _cron_item(item: str, label: str, low: int, high: int, names: dict[str, int]) -> str | None:
    base, slash, step = item.partition("/")
    if slash and not (_DIGITS.fullmatch(step) and 1 <= int(step) <= high - low + 1):
        return f"bad step `{step}` in the {label} field (expected 1-{high - low + 1})"
    if base in ("*", "?"):
        return None
    bounds = base.split("-")
    if len(bounds) > 2:
        return f"bad range `{base}` in the {label} field"
    numbers = []
    for bound in bounds:
        number = names.get(bound.lower()) if bound.lower() in names else (
            int(bound) if _DIGITS.fullmatch(bound) else None)
        if number is None or not low <= number <= high:
            return f"`{bound}` is not a valid {label} ({low}-{high})"
        numbers.append(number)
    if len(numbers) == 2 and numbers[0] > numbers[1]:
        return f"range `{base}` in the {label} field runs backwards; write it low to high"
    return None


_DIGITS = re.compile(r"[0-9]{1,4}")  # ASCII only: str.isdigit() also takes `٣` and `³`


def _cron(value: str) -> str:
    problem = cron_problem(value)
    if problem:
        raise PydanticCustomError(
            "mlc_cron", "invalid cron schedule `{value}`: {problem}",
            {"value": value, "problem": problem})
    return value


Cron = Annotated[str, AfterValidator(_cron), CRON_HINT]

# Image references: [registry/]repository[:tag][@sha256:digest]
IMAGE_RE = re.compile(
    r"(?P<repo>[a-z0-9]+([._-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?")


def _image(value: str) -> str:
    m = IMAGE_RE.fullmatch(value)
    if not m or not (m.group("tag") or m.group("digest")):
        raise PydanticCustomError(
            "mlc_image", "invalid image reference `{value}`: expected `registry/repository:tag`, "
            "`registry/repository@sha256:<64 hex>` or both", {"value": value})
    return value


ImageRef = Annotated[str, AfterValidator(_image), IMAGE_HINT]


def _percent(value: float) -> float:
    if not 0 < value < 100:
        raise PydanticCustomError("mlc_range", "`{value}` is out of range: expected a percentage "
                                  "strictly between 0 and 100 (e.g. 99.9)", {"value": value})
    return value


Percent = Annotated[float, AfterValidator(_percent), PERCENT_HINT]


def _fraction(value: float) -> float:
    if not 0 <= value <= 1:
        raise PydanticCustomError("mlc_range", "`{value}` is out of range: expected a fraction "
                                  "from 0 to 1 (e.g. 0.05)", {"value": value})
    return value


Fraction = Annotated[float, AfterValidator(_fraction), FRACTION_HINT]

# Feature and column types, as Feast names them (lowercase here, mapped by the Feast backend).
VALUE_TYPES = ("bool", "bytes", "float32", "float64", "int32", "int64", "string",
               "unix_timestamp")
