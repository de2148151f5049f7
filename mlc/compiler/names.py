"""The one helper for names that other systems validate (DESIGN rule 5).

Every Kubernetes object name, label value and generated Python identifier goes through here,
so that the rules (character set, length, how to shorten) are decided once. Shortening keeps
a readable prefix and appends a hash of the full input, as cdk8s does: two inputs that differ
only past the cut still get different names, and the same input always gets the same name.

Note that sanitizing is not injective ("My_Model" and "my-model" both become "my-model");
detecting such clashes between a project's names is the resolve pass's job.
"""

from __future__ import annotations

import hashlib
import keyword
import re

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
HASH_LEN = 8
# The shortest limit that still leaves one character before "-" + hash.
_MIN_MAX_LEN = HASH_LEN + 2

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_NOT_DNS_LABEL_CHARS = re.compile(r"[^a-z0-9]+")
_NOT_LABEL_VALUE_CHARS = re.compile(r"[^-A-Za-z0-9_.]+")
_NOT_IDENTIFIER_CHARS = re.compile(r"[^A-Za-z0-9_]")


def short_hash(text: str) -> str:
    # surrogatepass: any Python str hashes, even one that is not valid UTF-8.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LEN]


def _joined(parts: tuple[str, ...]) -> str:
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"name parts must be strings, got {part!r}")
    if not any(parts):
        raise ValueError(f"cannot make a name from {parts!r}: the input is empty")
    return "-".join(parts)


def _check_max_len(max_len: int, ceiling: int) -> None:
    if not _MIN_MAX_LEN <= max_len <= ceiling:
        raise ValueError(f"max_len must be between {_MIN_MAX_LEN} and {ceiling}, got {max_len}")


def _shorten(name: str, original: str, max_len: int, trim: str) -> str:
    if len(name) <= max_len:
        return name
    prefix = name[: max_len - HASH_LEN - 1].rstrip(trim)
    return f"{prefix}-{short_hash(original)}"


def _sanitize_label(text: str) -> str:
    return _NOT_DNS_LABEL_CHARS.sub("-", text.lower()).strip("-")


def dns_label(*parts: str, max_len: int = DNS_LABEL_MAX) -> str:
    """A DNS-1123 label (most object names): lowercase alphanumerics and '-', at most 63.

    Parts are joined with '-'; other characters become '-', runs of '-' collapse. An input
    with no usable character at all (say, only CJK) gets "x-" + its hash, still distinct.
    """
    _check_max_len(max_len, DNS_LABEL_MAX)
    joined = _joined(parts)
    name = _sanitize_label(joined) or f"x-{short_hash(joined)}"
    return _shorten(name, joined, max_len, "-")


def dns_1035_label(*parts: str, max_len: int = DNS_LABEL_MAX) -> str:
    """Like `dns_label`, but starting with a letter, as Services and KServe require."""
    name = dns_label(*parts, max_len=max_len)
    if name[0].isalpha():
        return name
    return dns_label("x", *parts, max_len=max_len)


def dns_subdomain(*parts: str, max_len: int = DNS_SUBDOMAIN_MAX) -> str:
    """A DNS-1123 subdomain (ConfigMaps, Secrets, ...): dot-separated labels, at most 253."""
    _check_max_len(max_len, DNS_SUBDOMAIN_MAX)
    joined = _joined(parts)
    labels = [_sanitize_label(piece) for piece in joined.split(".")]
    name = ".".join(label for label in labels if label) or f"x-{short_hash(joined)}"
    return _shorten(name, joined, max_len, "-.")


def label_value(text: str, *, max_len: int = LABEL_VALUE_MAX) -> str:
    """A Kubernetes label value: empty, or alphanumerics with '-_.' inside, at most 63.

    Unlike names, label values keep their case. A valid value comes back unchanged.
    """
    _check_max_len(max_len, LABEL_VALUE_MAX)
    if not isinstance(text, str):
        raise TypeError(f"label value must be a string, got {text!r}")
    if is_label_value(text) and len(text) <= max_len:
        return text
    value = _NOT_LABEL_VALUE_CHARS.sub("-", text).strip("-_.") or f"x-{short_hash(text)}"
    return _shorten(value, text, max_len, "-_.")


def is_dns_label(text: str) -> bool:
    return len(text) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(text) is not None


def is_dns_1035_label(text: str) -> bool:
    return len(text) <= DNS_LABEL_MAX and _DNS_1035_LABEL.fullmatch(text) is not None


def is_dns_subdomain(text: str) -> bool:
    return len(text) <= DNS_SUBDOMAIN_MAX and _DNS_SUBDOMAIN.fullmatch(text) is not None


def is_label_value(text: str) -> bool:
    return len(text) <= LABEL_VALUE_MAX and _LABEL_VALUE.fullmatch(text) is not None


def python_identifier(text: str) -> str:
    """A valid Python identifier that is not a keyword, for generated code.

    ASCII only: non-ASCII identifiers are NFKC-normalized by Python, so two different
    strings could name the same variable.
    """
    if not isinstance(text, str):
        raise TypeError(f"identifier source must be a string, got {text!r}")
    name = _NOT_IDENTIFIER_CHARS.sub("_", text) or "_"
    if name[0].isdigit():
        name = "_" + name
    # Soft keywords (match, case, type, _) are valid names and stay as they are.
    if keyword.iskeyword(name):
        name += "_"
    return name
