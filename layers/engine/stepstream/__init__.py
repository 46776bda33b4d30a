"""Stepstream's engine: YAML workflows, their runs, and the runs' events.

It knows nothing of Lambda: the functions under ``functions/`` translate their
events into calls on ``Engine`` and shape the answers.
"""

from stepstream.config import Settings
from stepstream.definition import Step, Workflow, parse_workflow
from stepstream.errors import (
    ConflictError,
    InputTooLargeError,
    NotFoundError,
    Problem,
    StepError,
    StepstreamError,
    StorageError,
    WorkflowInvalidError,
)
from stepstream.service import Engine, run_view, workflow_view

__all__ = [
    "ConflictError",
    "Engine",
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
