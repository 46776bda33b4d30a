"""What a node sees of the run while it executes one step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stepstream import templates
from stepstream.definition import Step


@dataclass(frozen=True)
class StepContext:
    """One step's execution context.

    Attributes:
        step: The step being run.
        scope: Outputs of the steps that ran so far, by step id, plus ``trigger``.
        known: Every step id of the workflow, plus ``trigger``.
        run_id: The run this step belongs to.
        progress: Reports partial output while the step runs (``step_progress`` events).
    """

    step: Step
    scope: Mapping[str, Any]
    known: frozenset[str]
    run_id: str
    progress: Callable[[dict[str, Any]], None] | None = None

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
