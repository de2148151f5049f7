"""Text from ml.yaml as the process in a container receives it.

The kubelet rewrites a container's `command`, `args` and every `env[].value` before it starts
the process: `$(NAME)` becomes the value of the variable NAME where one is defined, and `$$`
becomes `$` (Kubernetes API reference, "Container": "Double $$ are reduced to a single $,
which allows for escaping the $(VAR_NAME) syntax"). A custom trainer's argument
`--pattern=$(HOME)` would otherwise reach the process as `--pattern=/tmp`.

Doubling every `$` is exact: the rewrite reads `$$` as one `$` wherever it stands and copies
every other character, so the process sees the text as it was written in ml.yaml.
tests/test_escape.py checks that against an implementation of the kubelet's rules.
"""

from __future__ import annotations

__all__ = ["container_text"]


def container_text(text: str) -> str:
    """`text` for a container's command, args or env value: no variable reference in it is
    expanded, and every `$` arrives as written."""
    return text.replace("$", "$$")
