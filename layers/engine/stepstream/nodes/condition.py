"""``condition``: evaluate an expression and name the step to go to next."""

from __future__ import annotations

from typing import Any

from stepstream import expressions
from stepstream.nodes._context import StepContext


def run(ctx: StepContext) -> dict[str, Any]:
    """Evaluate ``condition``; ``next_step`` is ``on_true`` or ``on_false``."""
    expression = ctx.step.config.get("condition", True)
    result = expressions.evaluate(expression, ctx.scope, ctx.known)
    next_step = ctx.step.config.get("on_true" if result else "on_false")
    return {
        "result": result,
        "next_step": next_step,
        "condition": expression,
        "evaluated_to": result,
    }
