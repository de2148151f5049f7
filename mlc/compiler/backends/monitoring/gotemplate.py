"""Text for Go templates: alert labels and annotations, Alertmanager receiver fields.

Prometheus expands every alert label and annotation as a Go text/template, and Alertmanager
does the same with most receiver fields (Slack channel, e-mail addresses). A `{{` inside a
name or description from ml.yaml would start a template action: at best the rule fails to
load, at worst it reads data the author never meant to show. So literal text is escaped and
the few references to alert labels are written by this module only.

Escaping turns every `{` into the action `{{ "{" }}`, which prints one brace. Escaping each
brace, not only `{{`, is what makes concatenation safe: a user string that ends in `{`
followed by a template action of ours would otherwise form `{{{`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_BRACE = '{{ "{" }}'


@dataclass(frozen=True)
class Label:
    """A reference to one of the alert's labels, filled in when the alert fires."""

    name: str  # a label name of the metrics contract: an identifier, never user text


# Annotation text: literal strings and label references, in order.
Text = Sequence["str | Label"]


def literal(text: str) -> str:
    """Template source that renders exactly `text`."""
    return text.replace("{", _BRACE)


def template(parts: Text) -> str:
    """Template source for `parts`: literals escaped, labels as `{{ $labels.name }}`."""
    out = []
    for part in parts:
        if isinstance(part, Label):
            if not part.name.isidentifier():
                raise ValueError(f"label reference {part.name!r} is not an identifier")
            out.append(f"{{{{ $labels.{part.name} }}}}")
        else:
            out.append(literal(part))
    return "".join(out)


def rendered(parts: Text, labels: Mapping[str, str]) -> str:
    """What Prometheus renders `template(parts)` to for an alert with `labels`.

    The generated promtool tests expect exactly this, which checks the escaping for real.
    """
    return "".join(labels[p.name] if isinstance(p, Label) else p for p in parts)
