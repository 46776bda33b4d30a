"""What a node sees of the run while it executes one step."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stepstream import templates
from stepstream.definition import Step
from stepstream.errors import StepError


@dataclass(frozen=True)
class StepContext:
    """One step's execution context.

    Attributes:
        step: The step being run.
        scope: Outputs of the steps that ran so far, by step id, plus ``trigger``.
        known: Every step id of the workflow, plus ``trigger``.
        run_id: The run this step belongs to.
        progress: Reports partial output while the step runs (``step_progress`` events).
        deadline: When the step must be done (``time.time()`` seconds), if it must.
        iteration: Which execution of the step this is (loops run a step again).
    """

    step: Step
    scope: Mapping[str, Any]
    known: frozenset[str]
    run_id: str
    progress: Callable[[dict[str, Any]], None] | None = None
    deadline: float | None = None
    iteration: int = 1

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this execution of the step, and for no other.

        Sent as ``Idempotency-Key`` by steps with effects, so a service can drop the
        repeat when an executor died after the effect and before its checkpoint.
        """
        return f"{self.run_id}/{self.step.id}/{self.iteration}"

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline).

        Raises:
            StepError: The deadline has passed (kind ``timeout``).
        """
        if self.deadline is None:
            return None
        left = self.deadline - time.time()
        if left <= 0:
            raise StepError("the step's time ran out", kind="timeout", field="timeout")
        return left

    def get(self, key: str, default: Any = None) -> Any:
        """The step's key ``key`` with its templates rendered."""
        raw = self.step.config.get(key, default)
        return templates.render(raw, self.scope, self.known, key)

    def text(self, key: str, default: str = "") -> str:
        """The step's key ``key`` rendered as text (structures become JSON)."""
        return templates.to_text(self.get(key, default))

    def url(self, key: str = "url") -> str:
        """The step's URL key rendered with its data percent-encoded (see ``templates``)."""
        raw = self.step.config.get(key) or ""
        rendered = templates.render_string(str(raw), self.scope, self.known, key, url=True)
        return templates.to_text(rendered)
