"""Condition expressions, evaluated safely by simpleeval (no ``eval``).

A condition is a Python-like expression over references: ``{fetch.status_code} == 200``,
``{score.parsed.score} >= 7 and "vip" in {trigger.body.tags}``. Each ``{reference}``
becomes a variable bound to the referenced value, so values from a run's input are
data and can never change the expression's meaning. ``true``, ``false`` and ``null``
are the JSON literals. Comparing values of incompatible types is a step error.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from simpleeval import EvalWithCompoundTypes, InvalidExpression

from stepstream.errors import ExpressionError
from stepstream.templates import REFERENCE, render_string

_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False}


def evaluate(expression: str, scope: Mapping[str, Any], known: Collection[str]) -> Any:
    """Evaluate ``expression`` with its references bound to values from ``scope``.

    Raises:
        ExpressionError: The expression is malformed or compares incompatible values.
        TemplateError: A reference cannot be resolved.
    """
    names: dict[str, Any] = dict(_LITERALS)

    def bind(match: re.Match[str]) -> str:
        head = match.group(1).split(".")[0]
        if head not in known:
            raise ExpressionError(
                f"{expression!r} reads {match.group(0)}, but there is no step '{head}'",
                field="condition",
            )
        name = f"_ref{len(names)}"
        names[name] = render_string(match.group(0), scope, known, "condition")
        return name

    source = REFERENCE.sub(bind, expression)
    evaluator = EvalWithCompoundTypes(names=names, functions={})
    try:
        return evaluator.eval(source)
    except (InvalidExpression, SyntaxError, ArithmeticError, LookupError, ValueError) as exc:
        raise ExpressionError(f"cannot evaluate {expression!r}: {exc}", field="condition") from exc
    except TypeError as exc:
        raise ExpressionError(
            f"{expression!r} compares values of incompatible types: {exc}", field="condition"
        ) from exc
