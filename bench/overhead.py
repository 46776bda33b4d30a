"""Figure 4: the engine's own cost per step, the runner in-process with no I/O.

Workflows of trigger, condition and ``log`` notify steps (templates included) run
through ``run_workflow`` with a recorder that does what the stored one does short of
I/O: it builds every event and step result and encodes them as JSON, in memory.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bench.stats import Summary, summarize
from stepstream import _json
from stepstream.definition import Workflow, parse_workflow
from stepstream.runner import StepResult, now_iso, run_workflow

SIX_STEPS = """\
name: bench_six_steps
steps:
  - id: receive_event
    type: trigger
  - id: route_on_status
    type: condition
    condition: "{trigger.body.status_code} == 200"
    on_true: notify_healthy
    on_false: notify_degraded
  - id: notify_healthy
    type: notify
    channel: log
    message: "Upstream is healthy (HTTP {trigger.body.status_code}); carrying on."
  - id: notify_degraded
    type: notify
    channel: log
    message: "Upstream is degraded (HTTP {trigger.body.status_code}); paging on-call."
  - id: count_checks
    type: condition
    condition: "{trigger.body.checks} >= 3 and 'prod' in {trigger.body.tags}"
  - id: finalize_run
    type: notify
    channel: log
    message: "Health pipeline finished: {count_checks.result}."
"""
TRIGGER = {"body": {"status_code": 200, "checks": 5, "tags": ["prod", "eu"]}, "headers": {}}


def hundred_steps() -> str:
    """A 100-step workflow: a trigger, then conditions and log notifications in turn."""
    lines = ["name: bench_hundred_steps", "steps:", "  - id: receive_event", "    type: trigger"]
    for n in range(1, 100):
        if n % 2:
            lines += [f"  - id: check_{n}", "    type: condition",
                      f"    condition: \"{{trigger.body.checks}} + {n} > {n}\""]
        else:
            lines += [f"  - id: note_{n}", "    type: notify", "    channel: log",
                      f"    message: \"step {n}: {{check_{n - 1}.result}}\""]
    return "\n".join(lines) + "\n"


class MemoryRecorder:
    """The stored recorder's work without its I/O: events and results as JSON in memory."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0
        self.events: list[str] = []
        self.steps: dict[str, str] = {}

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Build the event as the stored recorder does and keep its JSON."""
        self.seq += 1
        event = {"type": event_type, "run_id": self.run_id, "seq": self.seq,
                 "timestamp": now_iso(), **data}
        self.events.append(_json.dumps(event))

    def step_done(self, result: StepResult, steps_completed: int) -> None:
        """Keep the step's result as JSON."""
        self.steps[result.step_id] = _json.dumps(result.as_dict())


def per_step_us(workflow: Workflow, runs: int) -> list[float]:
    """Microseconds per step of each of ``runs`` runs of ``workflow``."""
    samples = []
    for n in range(runs):
        recorder = MemoryRecorder(f"run-{n}")
        started = time.perf_counter()
        outcome = run_workflow(workflow, recorder.run_id, TRIGGER, recorder)
        elapsed = time.perf_counter() - started
        if outcome.status != "completed":
            raise RuntimeError(f"{workflow.name} ended {outcome.status}: {outcome.error}")
        samples.append(elapsed * 1e6 / outcome.total_steps)
    return samples


def measure(runs_six: int = 400, runs_hundred: int = 40) -> list[Summary]:
    """µs per step on the 6-step and the 100-step workflow."""
    logging.getLogger("stepstream").setLevel(logging.WARNING)
    six, hundred = parse_workflow(SIX_STEPS), parse_workflow(hundred_steps())
    per_step_us(six, 20)  # warm up imports and caches
    return [
        summarize("engine overhead, 6 steps", "µs/step", per_step_us(six, runs_six)),
        summarize("engine overhead, 100 steps", "µs/step", per_step_us(hundred, runs_hundred)),
    ]
