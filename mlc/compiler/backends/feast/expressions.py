"""Derived features: an arithmetic expression from ml.yaml -> the pandas code that computes it.

Resolve already checked the expression, but this module is the last step before the text
becomes code that Feast imports and runs, so it checks again, and it never pastes the text:
it parses it and writes new source from the tree, node by node, from a closed set of node
types. A name becomes a column lookup (`inputs['amount']`), a number its `repr`; anything
else is an error.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping

from ...resolve.features import MAX_EXPRESSION_DEPTH, expression_depth
from .literals import Code, py_literal

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_UNARY = {ast.USub: "-", ast.UAdd: "+"}


class UnsafeExpression(ValueError):
    """The expression is not plain arithmetic over known names."""


def pandas_expression(expression: str, columns: Mapping[str, Code]) -> Code:
    """Python source computing `expression`, reading each name through `columns[name]`.

    Every operation is parenthesized, so the generated text means what the tree means
    regardless of precedence.
    """

    def column(name: str) -> Code:
        if name not in columns:
            raise UnsafeExpression(f"`{name}` is not a column this expression may read")
        return columns[name]

    return Code(_walk(_parse(expression), column))


def _parse(expression: str) -> ast.expr:
    if not isinstance(expression, str):
        raise UnsafeExpression(f"expected a string, got {expression!r}")
    try:
        tree = ast.parse(expression, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnsafeExpression(f"{expression!r} does not parse: {exc}") from None
    if expression_depth(tree) > MAX_EXPRESSION_DEPTH:  # the generated source must parse too
        raise UnsafeExpression(f"{expression!r} nests deeper than {MAX_EXPRESSION_DEPTH}")
    return tree


def _walk(node: ast.expr, column) -> str:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left, column), _walk(node.right, column)
        return f"({left} {_BINARY[type(node.op)]} {right})"
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return f"({_UNARY[type(node.op)]}{_walk(node.operand, column)})"
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        return column(node.id)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        if isinstance(node.value, float) and not math.isfinite(node.value):
            raise UnsafeExpression(f"{node.value!r} is not a finite number")
        return py_literal(node.value)
    raise UnsafeExpression(f"`{type(node).__name__}` is not allowed in a derived feature: "
                           "use names, numbers, + - * / and parentheses")
