"""Condition expressions: a small typed language evaluated by simpleeval (no ``eval``).

Syntax is Python's expression subset: arithmetic on numbers (``+ - * / %``),
comparisons (``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=``, chained), ``and``/``or``/``not``,
``in``/``not in``, parentheses, quoted
strings, numbers, ``true``/``false``/``null``, and ``{references}``. Each reference
becomes a variable bound to its value, so data from a run's input can never change
what the expression means (case C09).

Typing rules (case C03):

- ``==``/``!=`` compare values of one kind: numbers with numbers (ints exactly, never
  through float), strings with strings, booleans with booleans, lists, objects;
  ``null`` may be compared with anything, and a boolean with a number compares the
  number's truth (``0 == false``). Other pairs, e.g. ``"1" == 1``, are a step error.
- ``<``, ``<=``, ``>``, ``>=`` need two numbers or two strings.
- ``in`` needs a string in a string, any value in a list, or a key in an object.
- A truth test (the whole condition, operands of ``and``/``or``/``not``) accepts a
  boolean, or a number (0 is false). A string such as ``"false"`` or ``""``, null,
  a list or an object is a step error naming the value, never silently true.
"""

from __future__ import annotations

import ast
import operator
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

from simpleeval import EvalWithCompoundTypes, InvalidExpression

from stepstream.errors import ExpressionError
from stepstream.templates import REFERENCE, _reference, resolve

_LITERALS = {"true": True, "false": False, "null": None}
# One evaluator per thread (the local stack runs several executors in one process).
_PER_THREAD = threading.local()


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return {str: "string", list: "list"}.get(type(value), "object")


def _describe(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return f"{_kind(value)} {text[:80]}"


def truth(value: Any) -> bool:
    """The truth of a condition value under the rules above."""
    kind = _kind(value)
    if kind == "boolean":
        return bool(value)
    if kind == "number":
        return value != 0
    raise ExpressionError(
        f"a condition needs a boolean (or a number), not the {_describe(value)}",
        field="condition",
    )


def _equality(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def checked(left: Any, right: Any) -> bool:
        kinds = {_kind(left), _kind(right)}
        if kinds == {"boolean", "number"}:
            # Numbers are truth values (see above): 0 == false, 1 == true.
            return compare(truth(left), truth(right))
        if left is not None and right is not None and len(kinds) > 1:
            raise ExpressionError(
                f"cannot compare the {_describe(left)} with the {_describe(right)}",
                field="condition",
            )
        return compare(left, right)

    return checked


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def checked(left: Any, right: Any) -> bool:
        kinds = {_kind(left), _kind(right)}
        if kinds not in ({"number"}, {"string"}):
            raise ExpressionError(
                f"cannot order the {_describe(left)} and the {_describe(right)}",
                field="condition",
            )
        return compare(left, right)

    return checked


def _contains(item: Any, container: Any) -> bool:
    kind = _kind(container)
    if kind == "string" and isinstance(item, str):
        return item in container
    if kind == "list":
        return item in container
    if kind == "object" and isinstance(item, str):
        return item in container
    raise ExpressionError(
        f"cannot look for the {_describe(item)} in the {_describe(container)}", field="condition"
    )


def _arithmetic(compute: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def checked(left: Any, right: Any) -> Any:
        if {_kind(left), _kind(right)} != {"number"}:
            raise ExpressionError(
                f"arithmetic needs numbers, not the {_describe(left)} and the {_describe(right)}",
                field="condition",
            )
        return compute(left, right)

    return checked


_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: _arithmetic(operator.add),
    ast.Sub: _arithmetic(operator.sub),
    ast.Mult: _arithmetic(operator.mul),
    ast.Div: _arithmetic(operator.truediv),
    ast.Mod: _arithmetic(operator.mod),
    ast.Eq: _equality(operator.eq),
    ast.NotEq: _equality(operator.ne),
    ast.Lt: _ordering(operator.lt),
    ast.LtE: _ordering(operator.le),
    ast.Gt: _ordering(operator.gt),
    ast.GtE: _ordering(operator.ge),
    ast.In: _contains,
    ast.NotIn: lambda item, container: not _contains(item, container),
    ast.Not: lambda value: not truth(value),
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


class _Evaluator(EvalWithCompoundTypes):
    """simpleeval with typed truth tests for ``and``/``or``."""

    def _eval_boolop(self, node: ast.BoolOp) -> bool:
        want = isinstance(node.op, ast.Or)
        for value in node.values:
            if truth(self._eval(value)) is want:
                return want
        return not want


def _evaluator() -> _Evaluator:
    """This thread's evaluator, built on first use.

    Building one (simpleeval sets up its node table under a warnings filter) costs
    more than most evaluations. ``evaluate`` gives it each condition's names; nothing
    else in it changes from one condition to the next.
    """
    evaluator = getattr(_PER_THREAD, "evaluator", None)
    if evaluator is None:
        evaluator = _PER_THREAD.evaluator = _Evaluator(operators=_OPERATORS, functions={})
    return evaluator


def compile_source(expression: str) -> tuple[str, list[Any]]:
    """``expression`` with each reference replaced by a variable name, and the references."""
    refs: list[Any] = []

    def bind(match: Any) -> str:
        refs.append(_reference(match))
        return f"_ref{len(refs) - 1}"

    return REFERENCE.sub(bind, expression), refs


def check_syntax(expression: str) -> str | None:
    """Why ``expression`` cannot be parsed, or None when it can (a registration check)."""
    source, _refs = compile_source(expression)
    try:
        ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        return f"the condition is not a valid expression: {exc.msg}"
    return None


def evaluate(expression: str | bool, scope: Mapping[str, Any], known: Collection[str]) -> bool:
    """Evaluate a condition to a boolean.

    Raises:
        ExpressionError: Malformed, or it mixes types, or its result is not a truth value.
        TemplateError: A reference cannot be resolved.
    """
    if isinstance(expression, bool):
        return expression
    source, refs = compile_source(expression)
    names = dict(_LITERALS)
    for index, ref in enumerate(refs):
        names[f"_ref{index}"] = resolve(ref, scope, known, "condition")
    evaluator = _evaluator()
    evaluator.names = names
    try:
        return truth(evaluator.eval(source.strip()))
    except ExpressionError as exc:
        raise ExpressionError(f"{expression!r}: {exc}", field="condition") from None
    except (InvalidExpression, SyntaxError, ArithmeticError, LookupError, ValueError,
            TypeError) as exc:
        raise ExpressionError(f"cannot evaluate {expression!r}: {exc}", field="condition") from None
