"""What an editor learns from ml.schema.json beyond types: patterns, examples and titles.

mlc's own checks (types.py) stay the authority; the patterns here mirror them in the
ECMAScript dialect that yaml-language-server runs, so a bad quantity or cron is underlined
while it is typed. tests/test_schema_editor.py holds both sides to the same table of values
and names the few rules (sums, magnitudes) a pattern cannot state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import GetJsonSchemaHandler
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema


class EditorHint:
    """Adds a pattern, examples and an error message to a type's JSON Schema only; the
    validation itself is the type's `AfterValidator`."""

    def __init__(self, pattern: str | None = None, examples: Iterable[Any] = (),
                 message: str | None = None, numbers: dict[str, Any] | None = None):
        self.pattern, self.examples, self.message = pattern, tuple(examples), message
        self.numbers = numbers or {}

    def __get_pydantic_json_schema__(self, core: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        out = dict(handler(core))
        branches = out.get("anyOf", [out])
        for branch in branches:
            if branch.get("type") == "string" and self.pattern:
                branch["pattern"] = self.pattern
                if self.message:
                    # yaml-language-server's wording for a mismatch, instead of the regex
                    branch["patternErrorMessage"] = f"expected {self.message}"
            elif branch.get("type") in ("integer", "number"):
                branch.update(self.numbers)
        if self.examples:
            out["examples"] = list(self.examples)
        return out


# Patterns, anchored (JSON Schema's are searches), in the common subset of Python's `re`
# and ECMAScript: no named groups, no inline flags, `[0-9]` rather than `\d`.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
NAME_PATTERN = r"^[a-z]([a-z0-9_-]{0,61}[a-z0-9])?$"
FIELD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
DNS_LABEL_PATTERN = rf"^{_DNS_LABEL}$"
# The optional prefix is a DNS subdomain of at most 253 characters, before the one `/`.
LABEL_KEY_PATTERN = rf"^((?=[^/]{{1,253}}/){_DNS_LABEL}(\.{_DNS_LABEL})*/)?{_LABEL_NAME}$"
LABEL_VALUE_PATTERN = rf"^({_LABEL_NAME})?$"
NAMESPACE_PATTERN = rf"^(?!default$)(?!kube-){_DNS_LABEL}$"
SECRET_KEY_PATTERN = r"^(?!\.\.)(?!\.$)[-._a-zA-Z0-9]{1,253}$"
SOURCE_PATH_PATTERN = r"^([a-z][a-z0-9+.-]*://\S+|(?![/~])(?![A-Za-z]:)(?!\.\.([/\\]|$))[\s\S]*)$"
_NUMBER = r"([0-9]+(\.[0-9]+)?|\.[0-9]+)"
# The look-ahead refuses zero: some digit of the number before the unit is not 0.
QUANTITY_PATTERN = rf"^(?=[0-9.]*[1-9]){_NUMBER}(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$"
MEMORY_PATTERN = rf"^(?=[0-9.]*[1-9]){_NUMBER}(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$"
DURATION_PATTERN = r"^(?=.*[1-9])([0-9]+(ms|s|m|h|d|w))+$"
# Whole seconds: milliseconds only in thousands.
SECONDS_PATTERN = r"^(?=.*[1-9])([0-9]+[smhdw]|[0-9]*000ms)+$"
IMAGE_PATTERN = (r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*"
                 r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[a-f0-9]{64})?"
                 r"|@sha256:[a-f0-9]{64})$")


def env_var_pattern(reserved: Iterable[str]) -> str:
    names = "|".join(sorted(reserved))
    return rf"^(?!\.\.)(?!\.$)(?!({names})$)(?!MLC_|PET_)[-._a-zA-Z][-._a-zA-Z0-9]{{0,254}}$"


def _int_range(low: int, high: int) -> str:
    """An alternation matching low..high, with the leading zeros cron allows (4 digits)."""
    parts = []
    if low <= 9:
        parts.append(f"0{{0,3}}[{low}-{min(high, 9)}]")
    full = [t for t in range(1, 10) if max(low, 10) <= t * 10 and t * 10 + 9 <= high]
    if full:
        parts.append(f"0{{0,2}}[{full[0]}-{full[-1]}][0-9]")
    last = high // 10
    if last >= 1 and last not in full and high >= max(low, 10):
        parts.append(f"0{{0,2}}{last}[{max(low, last * 10) % 10}-{high % 10}]")
    return "(" + "|".join(parts) + ")"


def _any_case(word: str) -> str:
    return "".join(f"[{c}{c.upper()}]" for c in word)


_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAYS = "sun mon tue wed thu fri sat".split()


def _cron_field(low: int, high: int, names: list[str]) -> str:
    bound = _int_range(low, high)
    if names:
        bound = "(" + "|".join([bound, *(_any_case(n) for n in names)]) + ")"
    item = rf"(\*|\?|{bound}(-{bound})?)(/{_int_range(1, high - low + 1)})?"
    return f"{item}(,{item})*"


def _cron_pattern() -> str:
    fields = [_cron_field(0, 59, []), _cron_field(0, 23, []), _cron_field(1, 31, []),
              _cron_field(1, 12, _MONTHS), _cron_field(0, 7, _DAYS)]
    five = r"\s*" + r"\s+".join(fields) + r"\s*"
    macros = "@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    every = r"@every (?=.*[1-9])([0-9]+[smh]|[0-9]*000ms)+"
    return f"^({macros}|{every}|{five})$"


CRON_PATTERN = _cron_pattern()


def _hint(pattern: str, examples: tuple[str, ...], message: str, **numbers: Any) -> EditorHint:
    return EditorHint(pattern, examples, message, numbers or None)


NAME_HINT = _hint(NAME_PATTERN, ("fraud-classifier", "transactions_v2"),
                  "a name: lowercase letters, digits, `-` or `_`, starting with a letter, at "
                  "most 63 characters")
FIELD_HINT = _hint(FIELD_PATTERN, ("amount_avg_7d", "customer_id"),
                   "a field name: a letter or `_` followed by letters, digits or `_`")
DNS_LABEL_HINT = _hint(DNS_LABEL_PATTERN, ("risk-ml", "fraud-prod"),
                       "a DNS-1123 label: lowercase letters, digits and `-`, at most 63 "
                       "characters")
LABEL_KEY_HINT = _hint(LABEL_KEY_PATTERN, ("team", "example.com/tier"),
                       "a label key: an optional DNS prefix and `/`, then at most 63 letters, "
                       "digits, `-`, `_` or `.`")
LABEL_VALUE_HINT = _hint(LABEL_VALUE_PATTERN, ("risk", "v1.2"),
                         "a label value: at most 63 letters, digits, `-`, `_` or `.`, starting "
                         "and ending with a letter or digit")
NAMESPACE_HINT = _hint(NAMESPACE_PATTERN, ("fraud-prod",),
                       "a DNS-1123 label other than `default` and `kube-*`")
SECRET_KEY_HINT = _hint(SECRET_KEY_PATTERN, ("password", "tls.crt"),
                        "a key of a Secret: at most 253 letters, digits, `-`, `_` or `.`")
SOURCE_PATH_HINT = _hint(SOURCE_PATH_PATTERN,
                         ("data/transactions.parquet", "s3://bucket/transactions/"),
                         "a path inside the project folder, or an object-store URI")
QUANTITY_HINT = _hint(QUANTITY_PATTERN, ("500m", "2", "512Mi", "16Gi"),
                      "a positive Kubernetes quantity such as `500m`, `2`, `512Mi` or `16Gi`",
                      exclusiveMinimum=0)
MEMORY_HINT = _hint(MEMORY_PATTERN, ("512Mi", "16Gi"),
                    "bytes with a unit, at least 1Mi, e.g. `512Mi` or `4Gi`",
                    minimum=2**20)
DURATION_HINT = _hint(DURATION_PATTERN, ("30s", "15m", "1h30m", "7d"),
                      "a duration: a number and a unit (ms, s, m, h, d, w), e.g. `30s` or "
                      "`1h30m`")
SECONDS_HINT = _hint(SECONDS_PATTERN, ("90s", "1h", "7d"),
                     "a duration of whole seconds: a number and a unit (s, m, h, d, w), e.g. "
                     "`90s` or `7d`")
CRON_HINT = _hint(CRON_PATTERN, ("0 3 * * 1", "*/15 * * * *", "@daily"),
                  "a cron schedule: minute (0-59) hour (0-23) day-of-month (1-31) month "
                  "(1-12) day-of-week (0-7), or a macro such as `@daily`")
IMAGE_HINT = _hint(IMAGE_PATTERN, ("ghcr.io/acme/trainer:1.2.0",),
                   "an image reference `registry/repository:tag` or "
                   "`registry/repository@sha256:<64 hex>`")
PERCENT_HINT = EditorHint(examples=(99.9,), numbers={"exclusiveMinimum": 0,
                                                     "exclusiveMaximum": 100})
FRACTION_HINT = EditorHint(examples=(0.05,), numbers={"minimum": 0, "maximum": 1})


# Words a title writes differently from the field name's snake case.
_WORDS = {
    "api": "API", "cidr": "CIDR", "cpu": "CPU", "dns": "DNS", "gib": "GiB", "gpu": "GPU",
    "gpus": "GPUs", "id": "ID", "kserve": "KServe", "mig": "MIG", "mlflow": "MLflow",
    "slo": "SLO", "ttl": "TTL", "uri": "URI", "url": "URL", "argocd": "Argo CD", "db": "DB",
    "pagerduty": "PagerDuty", "iam": "IAM",
}


def field_title(name: str, info: FieldInfo) -> str:
    """`max_error_rate` -> "Max error rate"; an explicit `title=` wins over this."""
    words = [_WORDS.get(w, w) for w in name.strip("_").split("_")]
    first = words[0]
    return " ".join([first[:1].upper() + first[1:], *words[1:]])


_MODEL_TITLES = {"ArgoCd": "Argo CD", "BigQuerySource": "BigQuery source", "Gpu": "GPU",
                 "Mlflow": "MLflow", "PagerDuty": "PagerDuty", "Slo": "SLO"}


def model_title(model: type) -> str:
    """`RolloutGates` -> "Rollout gates", for hovers over a section."""
    if model.__name__ in _MODEL_TITLES:
        return _MODEL_TITLES[model.__name__]
    words, current = [], ""
    for char in model.__name__:
        if char.isupper() and current and not current[-1].isupper():
            words.append(current)
            current = ""
        current += char
    words.append(current)
    return " ".join([words[0], *(w if w.isupper() else w.lower() for w in words[1:])])
