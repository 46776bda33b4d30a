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

Failure rules (``policy``):

- A failed attempt that the step's ``retry`` covers is tried again after its backoff
  (a ``step_retrying`` event says why and when). One execution keeps its
  ``iteration`` through all its attempts, and so its ``Idempotency-Key``.
- A step's ``timeout`` bounds the execution, all attempts and waits included; the
  workflow's ``timeout`` bounds the run from its first start and caps each step's.
- After the last attempt, ``on_error`` decides: ``fail`` the run, ``continue`` with
  the next step, or go to a step (a jump, like a condition's). The failed step's
  output is ``{"error": {...}}`` plus what it got (an http response).

Durability: the runner's position (``Checkpoint``) goes with every batch the
recorder writes, and a run can start from one (``Resume``): after an executor died,
after a continuation, after a long retry wait, after a redrive. A step that was in
flight is run again as the same execution (same iteration, same key). The runner
stops early, with a ``RunOutcome`` of status ``suspended``, when the invocation's
time runs low (``Control.time_left``) or a retry must wait longer than it should
sleep here; the caller queues the rest. It stops before its next step when the run
is cancelled (``Control.cancelled``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from stepstream import _json, policy
from stepstream.definition import Step, Workflow
from stepstream.errors import LeaseLostError, StepError, StepstreamError, StorageError
from stepstream.nodes import NODES, StepContext, may_block
from stepstream.templates import SKIPPED

logger = logging.getLogger(__name__)

# step_completed events carry the output up to this size of JSON; past it, a summary.
EVENT_OUTPUT_LIMIT = 16_384
# No retry starts with less than this much of its step's time left.
MIN_ATTEMPT_SECONDS = 0.1
# A wait in the queue lasts longer than asked: SQS delays are whole seconds (rounded
# up), and the message takes a moment to arrive. A retry that waits there is planned
# only if its step's deadline leaves this much more.
QUEUE_WAIT_SLACK_SECONDS = 2.0
# A retry wait up to this long is slept in the process; a longer one goes to the queue.
SLEEP_LIMIT_SECONDS = 5.0
# The runner hands the rest of a run on when an invocation has less time than a step
# may take (its timeout, else BLOCKING_STEP_SECONDS for one that leaves the process)
# plus this margin to write its checkpoint.
YIELD_MARGIN_SECONDS = 5.0
BLOCKING_STEP_SECONDS = 60.0
# Without a ``timeout``, each attempt of these step types may take this long.
ATTEMPT_SECONDS = {"http": 30.0, "notify": 30.0, "llm": 600.0}
# The error of steps a run ended without reaching (a redrive may still reach them).
NOT_REACHED = "not reached: the run ended before this step"


def reached(stored: dict[str, Any]) -> bool:
    """Whether a stored step result is of a step the run got to (ran, or skipped by it).

    A step marked ``NOT_REACHED`` when its run ended is not: a redrive may reach it
    yet, and until then it does not count in ``steps_completed``.
    """
    return not (stored.get("status") == "skipped" and stored.get("error_message") == NOT_REACHED)


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
    attempts: int = 1

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
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> StepResult:
        """A result as ``as_dict`` wrote it (and the store kept it)."""
        return cls(stored["step_id"], stored["node_type"], stored["status"],
                   stored.get("output_data") or {}, stored.get("error_message"),
                   stored.get("started_at"), stored.get("completed_at"),
                   stored.get("iteration") or 0, stored.get("attempts") or 1)


@dataclass
class RunOutcome:
    """How a run ended, or (``suspended``) why it stopped before its end.

    Attributes:
        status: ``completed``, ``failed``, ``cancelled`` or ``suspended``.
        wake_at: For ``suspended``: when the run may go on (``time.time()``), if later.
        reason: For ``suspended``: ``continuation`` or ``retry_wait``.
    """

    status: str
    steps_completed: int
    total_steps: int
    error: str | None
    results: list[StepResult]
    wake_at: float | None = None
    reason: str | None = None


@dataclass
class Checkpoint:
    """Where a run is: enough, with its step results, to go on from here in another process.

    Attributes:
        index: The step to run next (or the one in flight).
        visits: Executions so far, by step id (the one in flight counted).
        passed: Steps passed over in the current pass.
        inflight: Whether the execution of ``steps[index]`` has started.
        attempt: The attempt of that execution to run next (1-based).
        step_deadline: When that execution must be done (``time.time()``), if limited.
        run_deadline: When the run must be done, if limited.
        wake_at: Not before this may the run go on (a retry's wait), if set.
        decided: Whether the execution of ``steps[index]`` has its result, and the
            run has not moved past it yet.
        failure: That execution's last failed attempt, while it waits to try again:
            what the step ends with if no time is left for the next attempt.
    """

    index: int = 0
    visits: dict[str, int] = field(default_factory=dict)
    passed: list[str] = field(default_factory=list)
    inflight: bool = False
    attempt: int = 1
    step_deadline: float | None = None
    run_deadline: float | None = None
    wake_at: float | None = None
    decided: bool = False
    failure: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The checkpoint as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        """A checkpoint as ``as_dict`` wrote it; unknown keys are ignored."""
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Resume:
    """A run going on from a checkpoint rather than starting.

    Attributes:
        checkpoint: Where it stopped.
        results: Its stored step results, by step id (``StepResult.as_dict`` shape).
        reason: Why it goes on: ``recovered``, ``continuation``, ``retry_wait``, ``redrive``.
        attempt: Which pick-up of the run this is (1 was its start).
    """

    checkpoint: Checkpoint
    results: dict[str, dict[str, Any]]
    reason: str
    attempt: int


class Control(Protocol):
    """What the runner asks of its surroundings between steps.

    Attributes:
        worked: Whether a step ran yet in this process's turn (the runner sets it);
            until one has, the runner never hands a run on for lack of time.
        step_allowance: The most time a step is taken to need when deciding whether
            to start it here or hand the run on; None: its whole deadline.
    """

    worked: bool
    step_allowance: float | None

    def cancelled(self) -> bool:
        """Whether the run was cancelled (it then stops before its next step)."""

    def time_left(self) -> float | None:
        """Seconds this process may still work on the run; None: no limit."""

    def wait(self, seconds: float) -> None:
        """Pause ``seconds`` (a short retry backoff); may return early on cancel."""


class Unlimited:
    """A ``Control`` with no time limit and no cancellation (tests, tools)."""

    worked = False
    step_allowance = None

    def cancelled(self) -> bool:
        """Never."""
        return False

    def time_left(self) -> float | None:
        """No limit."""
        return None

    def wait(self, seconds: float) -> None:
        """Sleep."""
        time.sleep(seconds)


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


@dataclass
class _Failure:
    """One failed attempt: ``{step.error}`` for templates, and what the step got."""

    message: str
    kind: str
    status_code: int | None = None
    output: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: Exception) -> _Failure:
        if isinstance(exc, StepError):
            return cls(_error_text(exc), exc.kind, exc.status_code, dict(exc.output))
        return cls(f"{type(exc).__name__}: {exc}", "crash")

    @classmethod
    def saved(cls, data: dict[str, Any]) -> tuple[StepResult, _Failure]:
        """A failed attempt as ``Checkpoint.failure`` keeps it (see ``save``)."""
        failure = cls(data["message"], data["kind"], data.get("status_code"),
                      data.get("output") or {})
        return StepResult.from_dict(data["result"]), failure

    def save(self, result: StepResult) -> dict[str, Any]:
        """This failure of the attempt that ``result`` is about, for the checkpoint.

        Its output (what the step got) is kept whole: the step may end with it after a
        wait in the queue, and the steps after read it (the store keeps a large
        checkpoint apart from the run's item).
        """
        return {"result": result.as_dict(), "message": self.message, "kind": self.kind,
                "status_code": self.status_code, "output": self.output}

    def as_output(self, attempts: int) -> dict[str, Any]:
        error = {"message": self.message, "kind": self.kind, "status_code": self.status_code,
                 "attempts": attempts}
        return {**self.output, "error": error}


class _Run:
    def __init__(
        self,
        workflow: Workflow,
        run_id: str,
        trigger: dict[str, Any],
        rec: Recorder,
        control: Control | None,
        resume: Resume | None,
    ) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.recorder = rec
        self.control = control or Unlimited()
        self.resume = resume
        self.scope: dict[str, Any] = {"trigger": trigger}
        self.known = frozenset({*workflow.step_ids, "trigger"})
        self.last: dict[str, StepResult] = {}
        self.cp = Checkpoint()
        self.passed: set[str] = set()
        self.total = len(workflow.steps)
        if resume is not None:
            self.restore(resume)
        track: Callable[[Callable[[], dict[str, Any]]], None] | None = getattr(rec, "track", None)
        if track is not None:
            track(self.snapshot)

    def restore(self, resume: Resume) -> None:
        """Take up the checkpoint and step results of a run that went before."""
        self.cp = resume.checkpoint
        self.passed = set(self.cp.passed)
        for step_id, stored in resume.results.items():
            if step_id not in self.known:
                continue
            if not reached(stored):
                continue  # a redrive may reach it yet
            result = StepResult.from_dict(stored)
            self.last[step_id] = result
            # An output stored as a summary (over the store's limit) is read as that.
            self.scope[step_id] = SKIPPED if result.status == "skipped" else result.output
        if resume.reason == "redrive":
            # A redriven run has its whole time again, and its failed step all its tries.
            self.cp.run_deadline = self.cp.step_deadline = self.cp.wake_at = None
            self.cp.attempt, self.cp.failure = 1, None
        elif resume.reason == "recovered" and self.cp.inflight:
            # The step in flight starts again: the time the run lay waiting for a new
            # executor (a lease to end, a message to come back) is not the step's.
            self.cp.step_deadline = None

    def snapshot(self) -> dict[str, Any]:
        """The checkpoint as it stands, for the recorder to write with its next batch."""
        self.cp.passed = sorted(self.passed)
        return self.cp.as_dict()

    def progress(self) -> dict[str, Any]:
        done = len(self.last)
        percent = int(done * 100 / self.total) if self.total else 100
        return {"steps_completed": done, "total_steps": self.total, "progress": percent}

    def step_data(self, step: Step, status: str, iteration: int) -> dict[str, Any]:
        return {"step_id": step.id, "node_type": step.type, "status": status,
                "iteration": iteration}

    def decide(self, result: StepResult, event_type: str, **extra: Any) -> None:
        self.last[result.step_id] = result
        self.recorder.step_done(result, len(self.last))
        data = {"step_id": result.step_id, "node_type": result.node_type, "status": result.status}
        if result.iteration:
            data["iteration"] = result.iteration
        if result.attempts > 1:
            data["attempts"] = result.attempts
        self.recorder.emit(event_type, {**data, **self.progress(), **extra})

    def skip(self, step: Step, error: str | None = None) -> None:
        """Mark ``step`` passed over in this pass (once), and its output unreadable.

        A step the run ended without reaching (``error`` is ``NOT_REACHED``) is not
        passed over: a redrive reaches it.
        """
        if error != NOT_REACHED:
            self.passed.add(step.id)
        self.scope[step.id] = SKIPPED
        previous = self.last.get(step.id)
        if previous is None or previous.status != "skipped":
            self.decide(StepResult(step.id, step.type, "skipped", error=error), "step_skipped")

    # -- one step --------------------------------------------------------------------

    def begin(self, step: Step) -> int:
        """Start (or take up again) the execution of ``step``; returns its iteration."""
        cp = self.cp
        if not cp.inflight:
            cp.visits[step.id] = cp.visits.get(step.id, 0) + 1
            cp.inflight, cp.attempt, cp.step_deadline, cp.decided = True, 1, None, False
            cp.failure = None
        if cp.step_deadline is None:
            timeout = step.config.get("timeout")
            ends = [time.time() + float(timeout)] if timeout else []
            cp.step_deadline = min([*ends, *filter(None, [cp.run_deadline])], default=None)
        return cp.visits[step.id]

    def attempt_deadline(self, step: Step) -> float | None:
        """When the attempt about to start must end: the step's deadline, else a default."""
        deadline = self.cp.step_deadline
        default = ATTEMPT_SECONDS.get(step.type)
        if step.config.get("timeout") is None and default is not None:
            deadline = min(deadline or float("inf"), time.time() + default)
        return deadline

    def attempt(self, step: Step, iteration: int) -> tuple[dict[str, Any] | None, _Failure | None]:
        """One attempt of ``step``: its output, or how it failed."""
        deadline = self.attempt_deadline(step)
        try:
            if deadline is not None and time.time() >= deadline:
                raise StepError("the step's time ran out", kind="timeout", field="timeout")
            context = StepContext(
                step, self.scope, self.known, self.run_id,
                lambda partial: self.progressed(step, iteration, partial), deadline, iteration,
            )
            return NODES[step.type](context), None
        except StepError as exc:
            return None, _Failure.of(exc)
        except (LeaseLostError, StorageError):
            raise  # the recording of a step_progress failed, not the step
        except StepstreamError as exc:
            return None, _Failure.of(exc)
        except Exception as exc:  # noqa: BLE001 - a node's bug fails its step, never the run record
            logger.exception("step crashed", extra={"run_id": self.run_id, "step_id": step.id})
            return None, _Failure.of(exc)

    def retry_delay(self, step: Step, failure: _Failure) -> float | None:
        """Seconds to wait before the next attempt; None if the failure stands."""
        retry = policy.Retry.of(step.config)
        if self.cp.attempt >= retry.attempts or not retry.covers(failure.kind,
                                                                 failure.status_code):
            return None
        delay = retry.delay(self.cp.attempt)
        deadline = self.cp.step_deadline
        slack = QUEUE_WAIT_SLACK_SECONDS if self.waits_in_queue(step, delay) else 0.0
        if deadline is not None and time.time() + delay + slack + MIN_ATTEMPT_SECONDS >= deadline:
            return None  # no time is left for another attempt
        return delay

    def execute(self, step: Step) -> StepResult | RunOutcome:
        """Run ``step`` through its attempts: its result, or how the run stopped meanwhile."""
        iteration = self.begin(step)
        self.control.worked = True
        # The last failed attempt (here, or before a wait in the queue): it stands if no
        # time is left to retry.
        failed = _Failure.saved(self.cp.failure) if self.cp.failure else None
        while True:
            if self.control.cancelled():
                return self.cancel_before(step, failed)
            deadline = self.cp.step_deadline
            if (failed is not None and deadline is not None
                    and time.time() + MIN_ATTEMPT_SECONDS >= deadline):
                return self.fail(*failed)
            data = self.step_data(step, "running", iteration)
            if self.cp.attempt > 1:
                data["attempt"] = self.cp.attempt
            # The write of this event may be what tells of a cancel: then the step
            # does not start after all.
            self.recorder.emit("step_started", {**data, **self.progress()})
            if self.control.cancelled():
                return self.cancel_before(step, failed)
            started_at, clock = now_iso(), time.perf_counter()
            output, failure = self.attempt(step, iteration)
            duration_ms = round((time.perf_counter() - clock) * 1000, 3)
            result = StepResult(step.id, step.type, "completed", output or {}, None, started_at,
                                now_iso(), iteration, self.cp.attempt)
            if failure is None:
                self.cp.inflight, self.cp.decided, self.cp.failure = False, True, None
                self.scope[step.id] = result.output
                self.decide(result, "step_completed", output=summarize(result.output),
                            duration_ms=duration_ms)
                return result
            result.completed_at = now_iso()
            delay = self.retry_delay(step, failure)
            if delay is None:
                return self.fail(result, failure, duration_ms)
            failed = (result, failure)
            self.cp.failure = failure.save(result)
            stopped = self.wait_to_retry(step, iteration, failure, delay)
            if stopped is not None:
                return stopped

    def fail(self, result: StepResult, failure: _Failure, duration_ms: float = 0) -> StepResult:
        """Decide ``result`` failed with ``failure`` (its last attempt's)."""
        result.status, result.error = "failed", failure.message
        result.output = failure.as_output(result.attempts)
        self.cp.inflight, self.cp.decided, self.cp.failure = False, True, None
        self.scope[result.step_id] = result.output
        self.decide(result, "step_failed", error=failure.message, error_kind=failure.kind,
                    duration_ms=duration_ms)
        return result

    def cancel_before(
        self, step: Step, failed: tuple[StepResult, _Failure] | None
    ) -> RunOutcome:
        """End the run cancelled before an attempt of ``step``.

        Before its first attempt the execution is undone (the step never ran); after
        a failed one, the step ends failed with that failure.
        """
        if self.cp.attempt == 1:
            self.cp.inflight = False
            self.cp.visits[step.id] -= 1
        elif failed is not None:
            self.fail(*failed)
        return self.finish("cancelled", None)

    def wait_to_retry(
        self, step: Step, iteration: int, failure: _Failure, delay: float
    ) -> RunOutcome | None:
        """Report the retry and wait for it here, or stop the run to wait in the queue."""
        retry = policy.Retry.of(step.config)
        data = {**self.step_data(step, "retrying", iteration), **self.progress(),
                "attempt": self.cp.attempt, "max_attempts": retry.attempts,
                "delay_seconds": round(delay, 3), "error": failure.message,
                "error_kind": failure.kind, "status_code": failure.status_code}
        # The checkpoint written with this event names the next attempt: a run taken up
        # after a crash in the wait does not make the failed attempt again.
        self.cp.attempt += 1
        self.recorder.emit("step_retrying", data)
        if not self.waits_in_queue(step, delay):
            self.control.wait(delay)
            return None
        self.cp.wake_at = time.time() + delay
        return self.suspend("retry_wait")

    def waits_in_queue(self, step: Step, delay: float) -> bool:
        """Whether a retry wait of ``delay`` goes to the queue rather than a sleep here."""
        left = self.control.time_left()
        room = left is None or left > delay + YIELD_MARGIN_SECONDS + self.budget(step)
        return delay > SLEEP_LIMIT_SECONDS or not room

    def budget(self, step: Step) -> float:
        """How long the next attempt of ``step`` is taken to last, to decide where it runs.

        Its deadline if it has one, else ``BLOCKING_STEP_SECONDS``, but never more
        than the control's ``step_allowance`` when it sets one.
        """
        if not may_block(step):
            return 0.0
        if self.cp.inflight and self.cp.step_deadline is not None:
            needed = max(0.0, self.cp.step_deadline - time.time())
        else:
            timeout = step.config.get("timeout")
            needed = float(timeout) if timeout else BLOCKING_STEP_SECONDS
        allowance = self.control.step_allowance
        return needed if allowance is None else min(needed, allowance)

    def progressed(self, step: Step, iteration: int, partial: dict[str, Any]) -> None:
        """A running step's partial output, as a ``step_progress`` event."""
        data = self.step_data(step, "running", iteration)
        self.recorder.emit("step_progress", {**data, **self.progress(), **partial})

    # -- where the run goes -------------------------------------------------------------

    def go_to(self, index: int, target: str) -> int:
        """Move from the step at ``index`` to step ``target``, as a jump does."""
        steps = self.workflow.steps
        target_index = self.workflow.index_of(target)
        if target_index <= index:
            self.passed.clear()  # a new pass over the loop's steps
        else:
            for passed in steps[index + 1 : target_index]:
                self.skip(passed)
        self.passed.discard(target)
        return target_index

    def jump(self, index: int, step: Step, result: StepResult) -> int:
        """Where execution goes after condition ``step`` at ``index`` decided."""
        steps = self.workflow.steps
        target = result.output.get("next_step")
        target_index = self.go_to(index, target) if target else index + 1
        other = step.config.get("on_false" if result.output.get("result") else "on_true")
        # A branch not taken that lies behind the condition already ran in this pass (a
        # loop's start, when the loop ends): its output is current, so it stays readable.
        if other and other != target and self.workflow.index_of(other) > index:
            self.skip(steps[self.workflow.index_of(other)])
        return target_index

    def over_limit(self, step: Step) -> str | None:
        runs = self.cp.visits.get(step.id, 0)
        if runs < step.max_iterations:
            return None
        message = (f"Step '{step.id}' hit its loop limit: it ran {runs} times and "
                   f"max_iterations is {step.max_iterations}")
        now = now_iso()
        refused = StepResult(step.id, step.type, "failed", error=message, started_at=now,
                             completed_at=now, iteration=runs + 1)
        self.decide(refused, "step_failed", error=message, error_kind="config", duration_ms=0)
        return message

    def hands_on(self, step: Step) -> bool:
        """Whether to leave ``step`` to a new invocation: this one has too little time left."""
        left = self.control.time_left()
        if left is None or not self.control.worked:
            return False
        return left < YIELD_MARGIN_SECONDS + self.budget(step)

    def announce(self) -> None:
        if self.cp.run_deadline is None and self.workflow.timeout:
            self.cp.run_deadline = time.time() + float(self.workflow.timeout)
        self.cp.wake_at = None
        if self.resume is None:
            self.recorder.emit("run_started", {"status": "running", **self.progress()})
            return
        self.recorder.emit("run_resumed", {"status": "running", "reason": self.resume.reason,
                                           "attempt": self.resume.attempt, **self.progress()})

    def run(self) -> RunOutcome:
        self.announce()
        steps = self.workflow.steps
        if self.cp.decided and self.cp.index < len(steps):
            # Taken up from a checkpoint written with a step's result, before the run
            # moved past that step: move past it now.
            step = steps[self.cp.index]
            ended = self.advance(step, self.last[step.id])
            if ended is not None:
                return ended
        while self.cp.index < len(steps):
            step = steps[self.cp.index]
            if not self.cp.inflight and step.id in self.passed:
                self.cp.index += 1
                continue
            stopped = self.stop_before(step)
            if stopped is not None:
                return stopped
            outcome = self.execute(step)
            if isinstance(outcome, RunOutcome):
                return outcome
            ended = self.advance(step, outcome)
            if ended is not None:
                return ended
        # A cancel that came while the last step ran: the run ends as it was told.
        return self.finish("cancelled" if self.control.cancelled() else "completed", None)

    def stop_before(self, step: Step) -> RunOutcome | None:
        """How the run stops before ``step``, if it must: cancelled, out of time, handed on."""
        if self.control.cancelled():
            return self.finish("cancelled", None)
        if self.cp.run_deadline is not None and time.time() >= self.cp.run_deadline:
            timeout = self.workflow.timeout
            return self.finish("failed", f"the run timed out: it may take {timeout:g} s")
        if not self.cp.inflight:
            error = self.over_limit(step)
            if error:
                return self.finish("failed", error)
        if self.hands_on(step):
            return self.suspend("continuation")
        return None

    def advance(self, step: Step, result: StepResult) -> RunOutcome | None:
        """Move past decided ``step``; the run's end if its failure ends the run."""
        self.cp.index, self.cp.decided = self.next_index(step, result), False
        if self.cp.index >= 0:
            return None
        # The failed step is where a redrive takes the run up again, afresh.
        self.cp.index = self.workflow.index_of(step.id)
        self.cp.inflight, self.cp.attempt, self.cp.step_deadline = True, 1, None
        return self.finish("failed", f"Step '{step.id}' failed: {result.error}")

    def next_index(self, step: Step, result: StepResult) -> int:
        """The step to run after ``step``; -1 when its failure fails the run."""
        index = self.cp.index
        if result.status == "failed":
            action, target = policy.on_error(step.config)
            if action == "fail":
                return -1
            return index + 1 if action == "continue" else self.go_to(index, str(target))
        if step.type == "condition":
            return self.jump(index, step, result)
        return index + 1

    def finish(self, status: str, error: str | None, kind: str | None = None) -> RunOutcome:
        """End the run: settle the step in flight, mark the steps not reached, then end.

        A step in flight may have run (an attempt before a crash, before a retry
        wait): it ends failed, with ``kind`` (by default ``cancelled`` or ``timeout``),
        and stays where a redrive takes the run up again. Cancelled while it waits to
        retry, it ends with the failure of its last attempt, as ``cancel_before`` ends it.
        """
        steps = self.workflow.steps
        if self.cp.inflight and self.cp.index < len(steps) and not self.settled(
                steps[self.cp.index]):
            step = steps[self.cp.index]
            if status == "cancelled" and self.cp.failure:
                self.fail(*_Failure.saved(self.cp.failure))
            else:
                why = error or f"the run was {status}"
                result = StepResult(step.id, step.type, "failed",
                                    error=f"{why} during this step", completed_at=now_iso(),
                                    iteration=self.cp.visits[step.id],
                                    attempts=max(1, self.cp.attempt - 1))
                kind = kind or ("cancelled" if status == "cancelled" else "timeout")
                self.fail(result, _Failure(result.error or why, kind))
            self.cp.inflight, self.cp.decided, self.cp.attempt = True, False, 1
            self.cp.step_deadline = None
        for step in steps:
            if step.id not in self.last:
                self.skip(step, NOT_REACHED)
        self.recorder.emit(f"run_{status}", {"status": status, **self.progress(), "error": error})
        return RunOutcome(status, len(self.last), self.total, error, list(self.last.values()))

    def settled(self, step: Step) -> bool:
        """Whether the current execution of ``step`` has its result."""
        result = self.last.get(step.id)
        return (result is not None and result.status != "skipped"
                and result.iteration == self.cp.visits.get(step.id))

    def suspend(self, reason: str) -> RunOutcome:
        """Stop here; the caller queues the rest of the run (``wake_at``, if set, or now)."""
        return RunOutcome("suspended", len(self.last), self.total, None,
                          list(self.last.values()), wake_at=self.cp.wake_at, reason=reason)


def end_run(
    workflow: Workflow,
    run_id: str,
    recorder: Recorder,
    resume: Resume | None,
    status: str,
    error: str | None,
    kind: str | None = None,
) -> RunOutcome:
    """End a run that is not running here, as the runner ends one (``_Run.finish``).

    For a run cancelled or failed from outside (the API, the dead-letter queue): the
    step in flight, if any, ends failed with ``kind``, the steps not reached say so,
    and the terminal event ``run_<status>`` follows.
    """
    run = _Run(workflow, run_id, {}, recorder, None, resume)
    return run.finish(status, error, kind)


def run_workflow(
    workflow: Workflow,
    run_id: str,
    trigger: dict[str, Any],
    recorder: Recorder,
    control: Control | None = None,
    resume: Resume | None = None,
) -> RunOutcome:
    """Run ``workflow`` to its end, or until it must stop, reporting to ``recorder``.

    Args:
        workflow: The checked workflow.
        run_id: The run's id, handed to nodes (webhook payloads carry it).
        trigger: The run's input: ``{"body": ..., "headers": ...}``.
        recorder: Receives events and step results as they happen. If it has a
            ``track`` method, it is given a callable returning the current checkpoint.
        control: Cancellation, time limit and waiting; none of them by default.
        resume: Go on from here instead of starting.

    Returns:
        The run's outcome: after its terminal event, or ``suspended`` (see ``RunOutcome``).
    """
    return _Run(workflow, run_id, trigger, recorder, control, resume).run()
