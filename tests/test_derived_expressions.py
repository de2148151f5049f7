"""Derived-feature expressions, property-based: every expression resolve accepts compiles to
Python that parses and computes what the expression says, and the whole generated Feast
module still parses with it; whatever the backend could not turn into valid Python (deep
nesting, `------x`) is refused by resolve first, as MLC206.
"""

from __future__ import annotations

import ast
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlc.compiler.backends.feast.expressions import UnsafeExpression, pandas_expression
from mlc.compiler.backends.feast.literals import Code
from mlc.compiler.resolve.features import MAX_EXPRESSION_DEPTH, expression_inputs

from .test_feast import _files, _project, _resolve

NAMES = ("price", "views", "spend_7d")
VALUES = {"price": 3.5, "views": 7, "spend_7d": -2.25}

leaf = st.one_of(st.sampled_from(NAMES), st.integers(0, 10**6).map(str),
                 st.floats(0, 1e6, allow_nan=False).map(repr))


def _extend(inner):
    return st.one_of(
        st.tuples(inner, st.sampled_from("+-*/"), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(st.sampled_from("-+"), inner).map("".join),
        inner.map(lambda e: f"({e})"))


expressions = st.one_of(
    st.recursive(leaf, _extend, max_leaves=40),
    # degenerate shapes: long unary chains and deep parentheses, the classic parser breakers
    st.tuples(st.text("-+", min_size=1, max_size=400), st.sampled_from(NAMES)).map("".join),
    st.integers(1, 250).map(lambda n: "(" * n + "price" + ")" * n),
    st.integers(1, 200).map(lambda n: " + ".join(["views"] * n)))


def _evaluate(source: str, values: dict) -> float | str:
    try:
        result = eval(compile(source, "<expr>", "eval"), {"__builtins__": {}}, values)  # noqa: S307
    except ZeroDivisionError:
        return "ZeroDivisionError"
    except OverflowError:
        return "OverflowError"
    return "nan" if isinstance(result, float) and math.isnan(result) else result


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions)
def test_accepted_expressions_compile_to_python_that_means_the_same(expression):
    if len(expression) > 500:  # the schema's limit
        return
    inputs = expression_inputs(expression)
    columns = {n: Code(f"inputs[{n!r}]") for n in NAMES}
    if isinstance(inputs, str):
        return  # refused by resolve (MLC206): the backend never sees it
    source = pandas_expression(expression, columns)
    ast.parse(source, mode="eval")  # must not raise: Feast imports this text
    assert _evaluate(source, {"inputs": VALUES}) == _evaluate(expression, dict(VALUES))


def test_deep_unary_chains_are_refused_before_the_backend():
    expression = "-" * 300 + "price"
    assert "levels deep" in expression_inputs(expression)
    try:
        pandas_expression(expression, {"price": Code("inputs['price']")})
    except UnsafeExpression:
        pass
    else:
        raise AssertionError("the backend must refuse it too")
    shallow = "-" * (MAX_EXPRESSION_DEPTH - 1) + "price"
    assert expression_inputs(shallow) == ["price"]


feast_expressions = expressions.filter(lambda e: len(e) <= 500)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(feast_expressions)
def test_every_generated_feast_module_parses(expression):
    data = _project()
    view = data["features"]["item_stats"]
    view["fields"].append({"name": "spend_7d", "type": "float64"})
    data["sources"]["item_daily"]["columns"].append({"name": "spend_7d", "type": "float64"})
    view["derived"] = [{"name": "probe", "type": "float64", "expression": expression}]
    with tempfile.TemporaryDirectory() as folder:
        project, diags = _resolve(Path(folder), data)
    if project is None:
        assert any(d.code == "MLC206" for d in diags.errors) or not isinstance(
            expression_inputs(expression), list), [d.message for d in diags.errors]
        return
    for path, content in _files(project).items():
        if path.endswith(".py"):
            ast.parse(content.decode("utf-8"), filename=path)
