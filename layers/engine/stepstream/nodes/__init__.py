"""The node types a step can have, by the name used in YAML ``type:``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepstream.nodes import condition, http, llm, notify, trigger
from stepstream.nodes._context import StepContext

NodeFunction = Callable[[StepContext], dict[str, Any]]

NODES: dict[str, NodeFunction] = {
    "trigger": trigger.run,
    "http": http.run,
    "llm": llm.run,
    "condition": condition.run,
    "notify": notify.run,
}

__all__ = ["NODES", "NodeFunction", "StepContext"]
