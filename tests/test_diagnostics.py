"""The diagnostics collection: one report per finding, in the order the passes found them."""

from mlc.compiler.diagnostics import Diagnostic, Diagnostics, Span


def test_a_finding_reached_twice_is_reported_once_in_first_seen_order():
    diags = Diagnostics()
    diags.error("MLC201", "b", span=Span("ml.yaml", 3, 1))
    diags.warning("MLC385", "a", span=Span("ml.yaml", 1, 1))
    diags.error("MLC201", "b", span=Span("ml.yaml", 3, 1))
    warning = diags.warnings[0].severity
    diags.extend([Diagnostic("MLC385", "a", Span("ml.yaml", 1, 1), severity=warning)])
    assert [d.message for d in diags] == ["b", "a"]
    assert len(diags.errors) == 1 and len(diags.warnings) == 1


def test_a_collection_built_from_a_list_keeps_deduplicating():
    first = Diagnostic("MLC201", "x", Span("ml.yaml", 2, 1))
    diags = Diagnostics(items=[first])
    diags.add(Diagnostic("MLC201", "x", Span("ml.yaml", 2, 1)))
    diags.add(Diagnostic("MLC201", "x", Span("ml.yaml", 2, 2)))
    assert len(diags) == 2
