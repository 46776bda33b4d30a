"""The runner: executes a workflow's steps in order, following condition jumps.

Order rule (the original's, made explicit):
- Steps run in file order.
- A ``condition`` jumps to ``on_true`` or ``on_false``; the branch not taken is
  marked ``skipped``, and so is every step passed over between the condition and
  its target. Execution then goes on in file order from the target, passing over
  steps already decided.
- A jump backwards is refused at registration until bounded loops land.
- When a step fails, the run fails and every step not yet decided is ``skipped``.

``steps_completed`` counts decided steps (ran or skipped), so a finished run of six
steps reports 6/6 whichever branch it took.
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

logger = logging.getLogger(__name__)

# step_completed events carry the output up to this size of JSON; past it, a summary.
EVENT_OUTPUT_LIMIT = 16_384


def now_iso() -> str:
    """The current UTC time in ISO 8601 with microseconds."""
    return datetime.now(UTC).isoformat()


@dataclass
class StepResult:
    """What became of one step in one run."""

    step_id: str
    node_type: str
    status: str
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: str | None = None
    completed_at: str | None = None

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
        """Record one step's final result."""


def summarize(output: Any) -> Any:
    """``output`` itself if its JSON is small, else a marked, bounded preview."""
    text = _json.dumps(output)
    if len(text) <= EVENT_OUTPUT_LIMIT:
        return output
    return {"truncated": True, "size": len(text), "preview": text[: EVENT_OUTPUT_LIMIT // 4]}


class _Run:
    def __init__(self, workflow: Workflow, run_id: str, trigger: dict[str, Any], rec: Recorder):
        self.workflow = workflow
        self.run_id = run_id
        self.recorder = rec
        self.scope: dict[str, Any] = {"trigger": trigger}
        self.known = frozenset({*workflow.step_ids, "trigger"})
        self.results: dict[str, StepResult] = {}
        self.total = len(workflow.steps)

    def progress(self) -> dict[str, Any]:
        done = len(self.results)
        percent = int(done * 100 / self.total) if self.total else 100
        return {"steps_completed": done, "total_steps": self.total, "progress": percent}

    def decide(self, result: StepResult, event_type: str, **extra: Any) -> None:
        self.results[result.step_id] = result
        self.recorder.step_done(result, len(self.results))
        data = {"step_id": result.step_id, "node_type": result.node_type}
        self.recorder.emit(event_type, {**data, "status": result.status, **self.progress(), **extra})

    def skip(self, step: Step) -> None:
        if step.id not in self.results:
            self.decide(StepResult(step.id, step.type, "skipped"), "step_skipped")

    def execute(self, step: Step) -> StepResult:
        started = now_iso()
        data = {"step_id": step.id, "node_type": step.type, "status": "running"}
        self.recorder.emit("step_started", {**data, **self.progress()})
        clock = time.perf_counter()
        ctx = StepContext(step, self.scope, self.known, self.run_id)
        try:
            output = NODES[step.type](ctx)
        except StepError as exc:
            exc.step_id = exc.step_id or step.id
            where = f" ({exc.field})" if exc.field else ""
            result = StepResult(step.id, step.type, "failed", {}, f"{exc}{where}", started)
        except StepstreamError as exc:
            result = StepResult(step.id, step.type, "failed", {}, str(exc), started)
        except Exception as exc:  # noqa: BLE001 - a node's bug fails its step, never the run record
            logger.exception("step crashed", extra={"run_id": self.run_id, "step_id": step.id})
            error = f"{type(exc).__name__}: {exc}"
            result = StepResult(step.id, step.type, "failed", {}, error, started)
        else:
            self.scope[step.id] = output
            result = StepResult(step.id, step.type, "completed", output, None, started)
        result.completed_at = now_iso()
        duration_ms = round((time.perf_counter() - clock) * 1000, 3)
        if result.status == "completed":
            self.decide(result, "step_completed", output=summarize(output), duration_ms=duration_ms)
        else:
            self.decide(result, "step_failed", error=result.error, duration_ms=duration_ms)
        return result

    def jump(self, index: int, step: Step, result: StepResult) -> int:
        target = result.output.get("next_step")
        other = step.config.get("on_false" if result.output.get("result") else "on_true")
        if other and other != target:
            self.skip(self.workflow.steps[self.workflow.index_of(other)])
        if not target:
            return index + 1
        # Registration refuses backward jumps, so the target lies ahead.
        target_index = self.workflow.index_of(target)
        for passed in self.workflow.steps[index + 1 : target_index]:
            self.skip(passed)
        return target_index

    def run(self) -> RunOutcome:
        self.recorder.emit("run_started", {"status": "running", **self.progress()})
        steps = self.workflow.steps
        index, error = 0, None
        while index < len(steps) and error is None:
            step = steps[index]
            if step.id in self.results:
                index += 1
                continue
            result = self.execute(step)
            if result.status == "failed":
                error = f"Step '{step.id}' failed: {result.error}"
            elif step.type == "condition":
                index = self.jump(index, step, result)
            else:
                index += 1
        for step in steps:
            self.skip(step)
        status = "failed" if error else "completed"
        terminal = {"status": status, **self.progress(), "error": error}
        self.recorder.emit(f"run_{status}", terminal)
        return RunOutcome(status, len(self.results), self.total, error, list(self.results.values()))


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
