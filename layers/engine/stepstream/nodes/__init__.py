"""The node types a step can have, by the name used in YAML ``type:``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stepstream.nodes import condition, http, llm, notify, trigger
from stepstream.nodes._context import StepContext

if TYPE_CHECKING:
    from stepstream.definition import Step

NodeFunction = Callable[[StepContext], dict[str, Any]]

NODES: dict[str, NodeFunction] = {
    "trigger": trigger.run,
    "http": http.run,
    "llm": llm.run,
    "condition": condition.run,
    "notify": notify.run,
}

# Step types that never leave the process: they finish in microseconds.
_LOCAL_TYPES = frozenset({"trigger", "condition"})
# notify channels that only write the log (email and slack have no provider yet; one
# that gets a provider leaves this set).
_LOCAL_CHANNELS = frozenset({"log", "email", "slack"})


def may_block(step: Step) -> bool:
    """Whether running ``step`` may wait on something outside the process (the network).

    A step of a type not known here is taken to block.
    """
    if step.type == "notify":
        return step.config.get("channel", "log") not in _LOCAL_CHANNELS
    return step.type not in _LOCAL_TYPES


__all__ = ["NODES", "NodeFunction", "StepContext", "may_block"]
