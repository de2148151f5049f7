"""Literal secrets: ml.yaml and its overlays are committed to git, so a secret value written
in them is already leaked, whatever mlc does with it next.

Every string of the merged document (keys and values, base and overlay alike) is checked
three ways, and any hit is MLC110 at the string's own line:

* by key: a value under a key named like a secret (`password`, `apiKey`, ...), outside the
  `secrets:` section and outside the `...Secret` keys that name a declared secret;
* by the rule set of the detect-secrets library (Yelp): its keyword, basic-auth and
  token-shape detectors, run on the line as `key: value` the way it scans a YAML file. Its
  two entropy detectors are left out: image digests and hashes would all be "secrets";
* by the shapes detect-secrets does not know (below), and by command-line flags in a list
  of arguments (`[--password, hunter2]`, `--token=...`, `Authorization: Bearer ...`).

A false positive is marked the way detect-secrets marks one, with a comment on the line of
the value (`# pragma: allowlist secret`) or on the line above it
(`# pragma: allowlist nextline secret`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from .diagnostics import Diagnostics, FieldPath
from .load import Document

LITERAL_SECRET = "MLC110"
ALLOW = "pragma: allowlist secret"
ALLOW_NEXT = "pragma: allowlist nextline secret"

_HELP = ("declare it under `secrets:` as `kubernetes: {name, key}` or `external: {store, path}` "
         "and refer to it by name from a `...Secret` key; if it is not a secret, end its line "
         f"with `# {ALLOW}`")

_SECRET_KEY = re.compile(r"(?i)(password|passwd|pwd|secret|token|api[-_]?key|access[-_]?key|"
                         r"private[-_]?key|credentials?)$")

# Shapes the detect-secrets rule set (1.5) does not cover. Each pattern is anchored on a
# literal prefix, so none can backtrack over a long value.
_SHAPES = (
    (re.compile(r"https://hooks\.slack\.com/services/\S+"), "a Slack webhook URL"),
    (re.compile(r"github_pat_[A-Za-z0-9_]{40,}"), "a GitHub fine-grained token"),
    (re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}"), "a GitHub token"),
    (re.compile(r"glpat-[A-Za-z0-9_-]{20,}"), "a GitLab token"),
    (re.compile(r"AIza[0-9A-Za-z_-]{35}"), "a Google API key"),
    (re.compile(r"[rs]k_live_[0-9A-Za-z]{16,}"), "a Stripe live key"),
    (re.compile(r"https://(?:\w+\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]+"),
     "a Discord webhook URL"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), "a bearer token"),
    (re.compile(r"(?i)[?&](?:access_token|token|api[-_]?key|apikey|key|secret|password|sig|"
                r"signature|client_secret)=[^&#\s]{6,}"), "a credential in a URL's query"),
    # `redis://:password@host`: a URL with an empty user and a password; the lookbehind
    # starts a match only where a scheme starts, so a long run of letters is not retried
    (re.compile(r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@"),
     "a URL with a password in it"),
)
# `--password hunter2` as two list items, or `--password=hunter2` / `-p=...` as one
_FLAG = re.compile(r"(?i)^-{1,2}[a-z0-9_.-]*(password|passwd|secret|token|api[-_]?key|"
                   r"access[-_]?key|credentials?)$")
_FLAG_WITH_VALUE = re.compile(r"(?i)^-{1,2}[a-z0-9_.-]*(password|passwd|secret|token|"
                              r"api[-_]?key|access[-_]?key|credentials?)=(.+)$")
# Values that stand for a secret rather than being one: a variable, a template, a reference.
_PLACEHOLDER = re.compile(r"^(\$\{[^}]*\}|\$\([^)]*\)|\$[A-Z_][A-Z0-9_]*|\{\{.*\}\}|<[^>]*>|"
                          r"\*+|x+|changeme|redacted|none|null)$", re.I)


def scan(doc: Document, diags: Diagnostics) -> None:
    """Report every string of `doc` that holds a secret in plain text."""
    for path, key, value in _strings(doc.data, ()):
        if _is_env_reference(path):
            continue
        what = _secret_in(key, value, path)
        if what and not _allowed(doc, path):
            diags.error(LITERAL_SECRET, what, span=doc.span_for(path), path=path,
                        help=_help(path), redact=True)


def _is_env_reference(path: FieldPath) -> bool:
    """`env: {VAR: {secret: <name>}}`: the value names a secret, it is not one."""
    return len(path) >= 3 and path[-1] == "secret" and path[-3] == "env"


def _help(path: FieldPath) -> str:
    """The fix in the form its place takes: an environment variable refers to a declared
    secret as `{secret: <name>}`."""
    if len(path) >= 2 and path[-2] == "env":
        name = str(path[-1])
        secret = name.lower().replace("_", "-")
        return (f"declare it under `secrets:` (e.g. `{secret}: {{kubernetes: {{name, key}}}}`) "
                f"and write `env: {{{name}: {{secret: {secret}}}}}`; if it is not a secret, "
                f"end its line with `# {ALLOW}`")
    return _HELP


# Sections that name where secrets live, never what they are.
_REFERENCES = frozenset({((), "secrets"), (("platform",), "secretStore")})


def _strings(node: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str | None, str]]:
    """(path, the key it is under, the string) for every string value; for an item of a list
    of arguments that follows a flag such as `--password`, that flag is the key."""
    if isinstance(node, dict):
        for key, value in node.items():
            if (path, key) in _REFERENCES:
                continue  # references to secrets: names, stores and paths, never values
            child = (*path, key)
            if isinstance(value, str):
                yield child, str(key), value
            else:
                yield from _strings(value, child)
    elif isinstance(node, list):
        previous = None
        for index, value in enumerate(node):
            if isinstance(value, str):
                flag = previous if previous and _FLAG.match(previous) else None
                yield (*path, index), flag, value
                previous = value
            else:
                yield from _strings(value, (*path, index))
                previous = None


def _secret_in(key: str | None, value: str, path: FieldPath) -> str | None:
    if not value.strip() or _PLACEHOLDER.match(value.strip()):
        return None
    if key is not None and key.endswith("Secret") and not key.startswith("-"):
        return None  # names a declared secret
    if key is not None and _FLAG.match(key):
        return f"the argument after `{key}` is a secret written in plain text"
    if key is not None and _SECRET_KEY.search(key):
        return f"`{key}` looks like a secret written in plain text"
    flag = _FLAG_WITH_VALUE.match(value)
    if flag and not _PLACEHOLDER.match(flag.group(2)):
        return "this argument passes a secret on the command line"
    for pattern, what in _SHAPES:
        if pattern.search(value):
            return f"this value contains {what}"
    line = f"{key}: {value}" if key is not None and not isinstance(path[-1], int) else value
    if not _worth_a_look(value):
        return None
    found = _detect_secrets(line)
    return f"this value contains {found}" if found else None


# Every detect-secrets rule we run needs one of these in the value: a credential word (its
# keyword and AWS-secret rules read them; secret-named keys are checked above) or a long
# token-like run mixing letters and digits (all its token shapes). A project whose strings
# have neither never pays for importing the library.
_WORDS = re.compile(r"(?i)secret|token|passw|pwd|bearer|credential|aws_|api_?key|access_?key|"
                    r"accountkey|private key|(A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}")
_RUN = re.compile(r"[A-Za-z0-9_+=-]{20,}")
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")


def _worth_a_look(value: str) -> bool:
    if _WORDS.search(value):
        return True
    for run in _RUN.findall(value):
        lower, upper, digit = (any(test(c) for c in run)
                               for test in (str.islower, str.isupper, str.isdigit))
        if (lower and upper and digit) or (
                len(run) >= 32 and digit and (lower or upper) and not _HEX.fullmatch(run)):
            return True
    return False


def _detect_secrets(line: str) -> str | None:
    for plugin in _plugins():
        try:
            hits = plugin.analyze_line(filename="ml.yaml", line=line, line_number=1)
        except Exception:  # noqa: BLE001 - a third-party rule must not crash validation
            continue
        for hit in hits:
            if hit.secret_value and not _PLACEHOLDER.match(hit.secret_value):
                return _describe(type(plugin).__name__)
    return None


def _describe(plugin_name: str) -> str:
    name = plugin_name.removesuffix("Detector")
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    return {"Keyword": "a password or key", "BasicAuth": "a URL with a password in it",
            "AWSKey": "an AWS key", "JwtToken": "a JSON Web Token",
            "PrivateKey": "a private key"}.get(name, f"a {words} credential")


_SKIPPED = frozenset({"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"})


@cache
def _plugins() -> tuple[Any, ...]:
    # Imported on first use: the library costs a tenth of a second to import, which only a
    # command that validates pays.
    import importlib
    import inspect
    import pkgutil

    import detect_secrets.plugins as package
    from detect_secrets.plugins.base import BasePlugin

    found = []
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        for name, cls in sorted(inspect.getmembers(module, inspect.isclass)):
            if (issubclass(cls, BasePlugin) and cls.__module__ == module.__name__
                    and not inspect.isabstract(cls) and name not in _SKIPPED):
                found.append(cls())
    return tuple(found)


def _allowed(doc: Document, path: FieldPath) -> bool:
    span = doc.span_for(path)
    if span is None or not span.line:
        return False
    lines = doc.texts.get(span.file, "").split("\n")
    here = lines[span.line - 1] if span.line <= len(lines) else ""
    above = lines[span.line - 2] if 2 <= span.line <= len(lines) + 1 else ""
    return ALLOW in here or ALLOW_NEXT in above
