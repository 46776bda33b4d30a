"""``trigger``: the entry step; its output is the run's input (``body``, ``headers``)."""

from __future__ import annotations

from typing import Any

from stepstream.nodes._context import StepContext


def run(ctx: StepContext) -> dict[str, Any]:
    """Pass the run's input on as this step's output."""
    return dict(ctx.scope["trigger"])
