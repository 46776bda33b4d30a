"""The runner: executes a workflow's steps, following condition jumps, loops bounded.

Order rules:

- Steps run in file order.
- A ``condition`` jumps to ``on_true`` or ``on_false`` (without one, to the next
  step). The branch not taken is ``skipped``, and so is every step a forward jump
  passes over; when execution later falls through to a skipped step, it passes it
  by. A jump always runs its target, even one skipped earlier.
- A jump backwards starts a new pass: the skip marks are cleared, and steps run
  again. Each step may run at most ``max_iterations`` times per run (the step's own
  key, else the workflow's, default 10); the run fails, naming the step and the
  limit, rather than running it once more.
- When a step fails, the run fails and every step that never ran is ``skipped``.
- A skipped step's output cannot be read: a template reading it fails its step
  (or takes its ``?? default``), never sees stale or empty data.

``steps_completed`` counts distinct steps that ran or were skipped, so a finished
six-step run reports 6/6 whichever branches (and however many loops) it took.
Step events carry ``iteration``: which execution of that step they are about.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from stepstream import _json
from stepstream.definition import Step, Workflow
from stepstream.errors import StepError, StepstreamError
from stepstream.nodes import NODES, StepContext
from stepstream.templates import SKIPPED

logger = logging.getLogger(__name__)

# step_completed events carry the output up to this size of JSON; past it, a summary.
EVENT_OUTPUT_LIMIT = 16_384


def now_iso() -> str:
    """The current UTC time in ISO 8601 with microseconds."""
    return datetime.now(UTC).isoformat()


@dataclass
class StepResult:
    """What became of one execution (or the skipping) of one step."""

    step_id: str
    node_type: str
    status: str
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    iteration: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The result in the API's shape (``output_data``, ``error_message``)."""
        return {
            "step_id": self.step_id,
            "node_type": self.node_type,
            "status": self.status,
            "output_data": self.output,
            "error_message": self.error,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "iteration": self.iteration,
        }


@dataclass
class RunOutcome:
    """How a run ended."""

    status: str
    steps_completed: int
    total_steps: int
    error: str | None
    results: list[StepResult]


class Recorder(Protocol):
    """Where the runner reports what happens: events and step results."""

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Record one event of the run."""

    def step_done(self, result: StepResult, steps_completed: int) -> None:
        """Record one step's result (each execution, and each skipping)."""


def summarize(output: Any) -> Any:
    """``output`` itself if its JSON is small, else a marked, bounded preview."""
    return _json.summary(output, EVENT_OUTPUT_LIMIT)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, StepError) and exc.field and not str(exc).startswith(f"{exc.field}:"):
        return f"{exc.field}: {exc}"
    return str(exc)


class _Run:
    def __init__(self, workflow: Workflow, run_id: str, trigger: dict[str, Any], rec: Recorder):
        self.workflow = workflow
        self.run_id = run_id
        self.recorder = rec
        self.scope: dict[str, Any] = {"trigger": trigger}
        self.known = frozenset({*workflow.step_ids, "trigger"})
        self.last: dict[str, StepResult] = {}
        self.visits: dict[str, int] = {}
        self.passed: set[str] = set()
        self.total = len(workflow.steps)

    def progress(self) -> dict[str, Any]:
        done = len(self.last)
        percent = int(done * 100 / self.total) if self.total else 100
        return {"steps_completed": done, "total_steps": self.total, "progress": percent}

    def decide(self, result: StepResult, event_type: str, **extra: Any) -> None:
        self.last[result.step_id] = result
        self.recorder.step_done(result, len(self.last))
        data = {"step_id": result.step_id, "node_type": result.node_type, "status": result.status}
        if result.iteration:
            data["iteration"] = result.iteration
        self.recorder.emit(event_type, {**data, **self.progress(), **extra})

    def skip(self, step: Step) -> None:
        """Mark ``step`` passed over in this pass (once), and its output unreadable."""
        self.passed.add(step.id)
        self.scope[step.id] = SKIPPED
        previous = self.last.get(step.id)
        if previous is None or previous.status != "skipped":
            self.decide(StepResult(step.id, step.type, "skipped"), "step_skipped")

    def execute(self, step: Step) -> StepResult:
        iteration = self.visits[step.id] = self.visits.get(step.id, 0) + 1
        data = {"step_id": step.id, "node_type": step.type, "status": "running",
                "iteration": iteration}
        self.recorder.emit("step_started", {**data, **self.progress()})
        result = StepResult(step.id, step.type, "completed", started_at=now_iso(),
                            iteration=iteration)
        clock = time.perf_counter()
        try:
            context = StepContext(step, self.scope, self.known, self.run_id,
                                  lambda partial: self.progressed(step, iteration, partial))
            result.output = NODES[step.type](context)
        except StepstreamError as exc:
            result.status, result.error = "failed", _error_text(exc)
        except Exception as exc:  # noqa: BLE001 - a node's bug fails its step, never the run record
            logger.exception("step crashed", extra={"run_id": self.run_id, "step_id": step.id})
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        result.completed_at = now_iso()
        duration_ms = round((time.perf_counter() - clock) * 1000, 3)
        if result.status == "completed":
            self.scope[step.id] = result.output
            self.decide(result, "step_completed", output=summarize(result.output),
                        duration_ms=duration_ms)
        else:
            self.decide(result, "step_failed", error=result.error, duration_ms=duration_ms)
        return result

    def progressed(self, step: Step, iteration: int, partial: dict[str, Any]) -> None:
        """A running step's partial output, as a ``step_progress`` event."""
        data = {"step_id": step.id, "node_type": step.type, "status": "running",
                "iteration": iteration}
        self.recorder.emit("step_progress", {**data, **self.progress(), **partial})

    def jump(self, index: int, step: Step, result: StepResult) -> int:
        """Where execution goes after condition ``step`` at ``index`` decided."""
        steps = self.workflow.steps
        target = result.output.get("next_step")
        target_index = self.workflow.index_of(target) if target else index + 1
        if target_index <= index:
            self.passed.clear()  # a new pass over the loop's steps
        else:
            for passed in steps[index + 1 : target_index]:
                self.skip(passed)
        other = step.config.get("on_false" if result.output.get("result") else "on_true")
        # A branch not taken that lies behind the condition already ran in this pass (a
        # loop's start, when the loop ends): its output is current, so it stays readable.
        if other and other != target and self.workflow.index_of(other) > index:
            self.skip(steps[self.workflow.index_of(other)])
        self.passed.discard(target or "")
        return target_index

    def over_limit(self, step: Step) -> str | None:
        runs = self.visits.get(step.id, 0)
        if runs < step.max_iterations:
            return None
        message = (f"Step '{step.id}' hit its loop limit: it ran {runs} times and "
                   f"max_iterations is {step.max_iterations}")
        now = now_iso()
        refused = StepResult(step.id, step.type, "failed", error=message, started_at=now,
                             completed_at=now, iteration=runs + 1)
        self.decide(refused, "step_failed", error=message, duration_ms=0)
        return message

    def run(self) -> RunOutcome:
        self.recorder.emit("run_started", {"status": "running", **self.progress()})
        steps = self.workflow.steps
        index, error = 0, None
        while index < len(steps) and error is None:
            step = steps[index]
            if step.id in self.passed:
                index += 1
                continue
            error = self.over_limit(step)
            if error:
                break
            result = self.execute(step)
            if result.status == "failed":
                error = f"Step '{step.id}' failed: {result.error}"
            elif step.type == "condition":
                index = self.jump(index, step, result)
            else:
                index += 1
        for step in steps:
            if step.id not in self.last:
                self.skip(step)
        status = "failed" if error else "completed"
        self.recorder.emit(f"run_{status}", {"status": status, **self.progress(), "error": error})
        results = list(self.last.values())
        return RunOutcome(status, len(self.last), self.total, error, results)


def run_workflow(
    workflow: Workflow, run_id: str, trigger: dict[str, Any], recorder: Recorder
) -> RunOutcome:
    """Run ``workflow`` to its end, reporting every event and step result to ``recorder``.

    Args:
        workflow: The checked workflow.
        run_id: The run's id, handed to nodes (webhook payloads carry it).
        trigger: The run's input: ``{"body": ..., "headers": ...}``.
        recorder: Receives events and step results as they happen.

    Returns:
        The run's outcome, after ``run_completed`` or ``run_failed`` was emitted.
    """
    return _Run(workflow, run_id, trigger, recorder).run()
