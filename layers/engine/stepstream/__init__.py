"""Stepstream's engine: YAML workflows, their runs, and the runs' events.

It knows nothing of Lambda: the functions under ``functions/`` translate their
events into calls on ``Engine`` and shape the answers.

Importing the package imports none of its modules: each name below is imported on
first use. The stream function, which only reads events, so never pays for the
workflow model, the runner or the nodes (about a third of its cold start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Each public name, by the module that defines it.
_EXPORTS = {
    "ConflictError": "stepstream.errors",
    "Engine": "stepstream.service",
    "IdempotencyKeyReusedError": "stepstream.errors",
    "InputTooLargeError": "stepstream.errors",
    "NotFoundError": "stepstream.errors",
    "Problem": "stepstream.errors",
    "Settings": "stepstream.config",
    "Step": "stepstream.definition",
    "StepError": "stepstream.errors",
    "StepstreamError": "stepstream.errors",
    "StorageError": "stepstream.errors",
    "Workflow": "stepstream.definition",
    "WorkflowInvalidError": "stepstream.errors",
    "parse_workflow": "stepstream.definition",
    "run_view": "stepstream.service",
    "workflow_view": "stepstream.service",
}

__all__ = [
    "ConflictError",
    "Engine",
    "IdempotencyKeyReusedError",
    "InputTooLargeError",
    "NotFoundError",
    "Problem",
    "Settings",
    "Step",
    "StepError",
    "StepstreamError",
    "StorageError",
    "Workflow",
    "WorkflowInvalidError",
    "parse_workflow",
    "run_view",
    "workflow_view",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stepstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the ones not imported yet included."""
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from stepstream.config import Settings
    from stepstream.definition import Step, Workflow, parse_workflow
    from stepstream.errors import (
        ConflictError,
        IdempotencyKeyReusedError,
        InputTooLargeError,
        NotFoundError,
        Problem,
        StepError,
        StepstreamError,
        StorageError,
        WorkflowInvalidError,
    )
    from stepstream.service import Engine, run_view, workflow_view
