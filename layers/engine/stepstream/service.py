"""What the handlers call: register workflows, start runs, execute them, read them.

One ``Engine`` per process, built from ``Settings``; it holds the AWS and Redis
clients so warm invocations reuse their connections.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stepstream import _json, tokens
from stepstream.config import Settings
from stepstream.definition import Workflow, parse_workflow
from stepstream.errors import (
    InputTooLargeError,
    LeaseLostError,
    RunStateError,
    StepstreamError,
    StorageError,
)
from stepstream.events import TERMINAL_TYPES, RedisPublisher
from stepstream.nodes import may_block
from stepstream.runner import (
    Checkpoint,
    Resume,
    StepResult,
    end_run,
    now_iso,
    reached,
    run_workflow,
)
from stepstream.store import CHECKPOINT_LIMIT, Claim, Progress, Release, RunEnd, Store

logger = logging.getLogger(__name__)

# Events a recorder gathers at most before writing them (see ``_StoredRecorder``).
FLUSH_EVENTS = 25
# Parsed definitions kept per process, by their YAML text.
PARSED_WORKFLOWS = 64
# A run's input is stored with the run (DynamoDB items hold 400 KB); past this, refused.
MAX_INPUT_BYTES = 128 * 1024
# What a run's item may hold in all: DynamoDB's 400 KB, less its attribute names and
# small fields. Step results share what the input, YAML and checkpoint leave.
RUN_ITEM_BUDGET = 380_000
# What a step of a run whose results were dropped from its record says of itself.
SHED_MESSAGE = ("the run's record was too full to keep this step's result; its events "
                "on the run's stream have it")
# Run attributes whose size stays as the run was created.
_FIXED_ATTRIBUTES = ("yaml_content", "trigger_data", "trigger_headers", "step_order")
# Request headers a webhook run keeps out of its input: they carry credentials.
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key",
                  "x-amz-security-token")
SECRET_HEADER_WORDS = ("signature", "token", "secret", "password")
# A queue message stays invisible this much longer than the lease it carries.
LEASE_GRACE_SECONDS = 30.0
# The share of a lease that must be left for events to be written on the strength of
# the last renewal (see ``_StoredRecorder._hold_lease``).
LEASE_SAFETY = 0.5
# How stale the knowledge of a cancel may be before a step starts: past it, ask.
CANCEL_CHECK_SECONDS = 1.0
# A message whose run met a passing storage failure comes back after this long.
RETRY_MESSAGE_SECONDS = 2.0
# SQS delays a message at most this long; a longer wait takes several hops.
MAX_QUEUE_DELAY_SECONDS = 900
# Run fields the API shows in lists and summaries, in the original's names.
RUN_FIELDS = (
    "id",
    "workflow_id",
    "status",
    "steps_completed",
    "total_steps",
    "error_message",
    "started_at",
    "completed_at",
    "created_at",
    "attempt",
    "cancel_requested",
    "results_shed",
)


class _StoredRecorder:
    """Writes a run's events (table, then Redis), step results and checkpoint, in batches.

    An event waits in the recorder until the run reaches a point where a reader
    could otherwise be kept waiting, and is then written with every event and step
    result gathered before it. The points:

    - a ``step_started`` of a step that may block (an http or llm call, a webhook),
      before the step runs;
    - a ``step_progress`` (an llm step's answer so far);
    - the terminal event, with the run's end;
    - ``FLUSH_EVENTS`` events gathered.

    Steps that stay in the process take microseconds, so their events reach a reader
    at the same moment either way; the run pays a write per batch, not per event.
    Every batch also writes the runner's checkpoint. So the result of every step with
    an effect is recorded before the next step with an effect starts, and a run taken
    up elsewhere repeats at most the step that was in flight; steps without effects in
    between are computed again from recorded data, with the same outcome.

    The order of one batch's writes is the invariant that keeps a run's events dense
    and unique, whoever crashes where:

    1. the events (but the terminal one), in one batch write;
    2. the run's record: results, checkpoint, ``last_seq``, end; conditional on this
       executor still holding the run's lease (``Store.claim_run``);
    3. the terminal event, if any (the record already final, a client that saw the
       end and reads the run never sees it running);
    4. Redis.

    A crash after 1 leaves events the record does not know of: whoever takes the run
    up numbers its events after the highest stored seq, so they stay as the history
    of an attempt that did not get recorded. A crash after 2 of the last batch leaves
    the terminal event unwritten: the record keeps its text (``end_event``) and the
    next message about the run writes it (``Engine.execute_run``).

    Args:
        engine: Where to write.
        run_id: The run.
        owner: The token of this executor's lease on the run.
        record: The run's record, kept current as results are written; None if unknown.
        seq: The highest seq already stored for the run.
        gather: Hold every event for the terminal one's write (a run ended from
            outside, whose events are all at once).
    """

    def __init__(
        self, engine: Engine, run_id: str, owner: str = "",
        record: dict[str, Any] | None = None, seq: int = 0, gather: bool = False,
    ) -> None:
        self.engine = engine
        # One write with the terminal event: a full item then still takes the end.
        self.gather = gather
        self.run_id = run_id
        self.owner = owner
        self.record = record
        self.seq = seq
        self.executions: dict[str, list[dict[str, Any]]] = {}
        # Steps whose start is written before they run; None: every step's.
        self.blocking: frozenset[str] | None = None
        self.events: list[tuple[int, str, str]] = []
        self.results: dict[str, dict[str, Any]] = {}
        # Bytes of JSON of each step result in the run's item, and of what else is there.
        self.sizes: dict[str, int] = {}
        self.fixed_size: int | None = None
        self.steps_completed = 0
        self.snapshot: Callable[[], dict[str, Any]] | None = None
        self.cancel_requested = False
        self.written_at = time.monotonic()
        self.lock = threading.Lock()

    def track(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        """Write ``snapshot()`` (the runner's checkpoint) with every batch."""
        self.snapshot = snapshot

    def restore(self, results: dict[str, dict[str, Any]], steps_completed: int) -> None:
        """Take up the step results already stored for the run (loop histories too)."""
        for step_id, stored in results.items():
            # Where an output is kept is the store's affair, not the execution's.
            ran = [_step_view(stored)] if stored.get("iteration") else []
            self.executions[step_id] = list(stored.get("executions") or ran)
            self.sizes[step_id] = _json.size(_json.dumps(stored))
        self.steps_completed = steps_completed

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        self.seq += 1
        event = {"type": event_type, "run_id": self.run_id, "seq": self.seq,
                 "timestamp": now_iso(), **data}
        self.events.append((self.seq, event_type, _json.dumps(event)))
        if event_type in TERMINAL_TYPES:
            self.flush(RunEnd(data["status"], event["timestamp"], data.get("error")))
        elif self.gather:
            return
        elif self._waits(event_type, data) or len(self.events) >= FLUSH_EVENTS:
            self.flush()

    def _waits(self, event_type: str, data: dict[str, Any]) -> bool:
        """Whether a reader would wait for this event if it were held back."""
        if event_type in ("step_progress", "step_retrying", "run_resumed"):
            return True
        if event_type != "step_started":
            return False
        return self.blocking is None or data["step_id"] in self.blocking

    def step_done(self, result: StepResult, steps_completed: int) -> None:
        history = self.executions.setdefault(result.step_id, [])
        if result.iteration:
            history.append(result.as_dict())
        stored = result.as_dict()
        if len(history) > 1:
            # A step that ran in a loop keeps every execution, not just the last.
            stored["executions"] = history
        self.results[result.step_id] = stored
        self.steps_completed = steps_completed

    def flush(self, finish: RunEnd | None = None, release: Release | None = None) -> None:
        """Write what was gathered, in the order the class docstring explains.

        What is taken is forgotten before it is written: after a failed write, a
        later flush (the ``run_failed`` of an abort) does not try it again.
        """
        with self.lock:
            events, results = self.events, list(self.results.values())
            self.events, self.results = [], {}
            ending = events[-1] if finish is not None and events else None
            body = events[:-1] if ending else events
            store = self.engine.store
            if body:
                self._hold_lease()
                store.put_events(self.run_id, body)
            checkpoint = self.snapshot() if self.snapshot else None
            progress = Progress(
                results, self.steps_completed, self.seq, checkpoint, finish,
                ending[2] if ending else None, release, self._room(results, checkpoint),
            )
            lease_until = time.time() + self.engine.settings.lease_seconds
            try:
                stored, cancelled = store.save_progress(self.run_id, self.owner, progress,
                                                        lease_until)
            except StorageError as exc:
                if not (exc.too_large and finish is not None):
                    raise
                # The results do not fit in the run's item: the run ends all the same,
                # without them (its events tell them), rather than stay running.
                logger.error("run ended without its results: its record is full",
                             extra={"run_id": self.run_id})
                shed = dataclasses.replace(progress, steps=[], shed=True)
                stored, cancelled = store.save_progress(self.run_id, self.owner, shed,
                                                        lease_until)
            self.written_at = time.monotonic()
            self.cancel_requested = self.cancel_requested or cancelled
            if ending:
                store.put_events(self.run_id, [ending])
            self._remember(stored, finish)
        if events and self.engine.publisher is not None:
            self.engine.publisher.publish_many(
                self.run_id, [(seq, text) for seq, _type, text in events])

    def _room(self, batch: list[dict[str, Any]], checkpoint: dict[str, Any] | None) -> int | None:
        """Bytes the results of ``batch`` may take in the run's item (``Progress.room``)."""
        if self.record is None:
            return None
        if self.fixed_size is None:
            self.fixed_size = sum(_json.size(_json.dumps(self.record.get(name)))
                                  for name in _FIXED_ATTRIBUTES)
        written = {step["step_id"] for step in batch}
        others = sum(size for step_id, size in self.sizes.items() if step_id not in written)
        # A checkpoint larger than the store keeps in the item is kept apart.
        kept = min(_json.size(_json.dumps(checkpoint)), CHECKPOINT_LIMIT) if checkpoint else 0
        return RUN_ITEM_BUDGET - self.fixed_size - others - kept

    def _hold_lease(self) -> None:
        """Make sure the lease holds before events are written without a condition.

        A batch write of events has no condition, so the lease must be known to hold
        when it goes: the last write that renewed it must be recent enough that the
        lease cannot have run out (by ``LEASE_SAFETY`` of its length). If it is older
        (renewals failed, or the process stalled), it is renewed first, which raises
        ``LeaseLostError`` if another executor has the run. Called with ``lock`` held.
        """
        lease = self.engine.settings.lease_seconds
        if time.monotonic() - self.written_at >= lease * (1 - LEASE_SAFETY):
            self._renew(lease)

    def renew(self, lease_seconds: float) -> None:
        """Extend the lease (the keeper's thread); notes a cancel request."""
        with self.lock:
            self._renew(lease_seconds)

    def _renew(self, lease_seconds: float) -> None:
        until = time.time() + lease_seconds
        if self.engine.store.renew_lease(self.run_id, self.owner, until):
            self.cancel_requested = True
        self.written_at = time.monotonic()

    def _remember(self, stored: list[dict[str, Any]], finish: RunEnd | None) -> None:
        """Keep ``record`` as the table now has it."""
        if self.record is None:
            return
        self.sizes.update({step["step_id"]: _json.size(_json.dumps(step)) for step in stored})
        self.record["last_seq"] = self.seq
        self.record.setdefault("steps", {}).update({step["step_id"]: step for step in stored})
        if stored:
            self.record["steps_completed"] = self.steps_completed
        if finish is not None:
            self.record.update(status=finish.status, completed_at=finish.completed_at)
            if finish.error:
                self.record["error_message"] = finish.error


class _Keeper:
    """Holds a run's lease while a long step runs, and the queue message's visibility.

    A thread wakes every third of the lease; when nothing was written for that long
    (a batch write renews the lease on its own), it renews the lease and calls
    ``keepalive`` so the message that carried the run stays invisible as long as the
    lease lives. It stops when the run stops, or when the lease is lost.
    """

    def __init__(self, recorder: _StoredRecorder, lease_seconds: float,
                 keepalive: Callable[[float], None] | None, wake: threading.Event) -> None:
        self.recorder = recorder
        self.lease_seconds = lease_seconds
        self.keepalive = keepalive
        self.wake = wake
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)

    def __enter__(self) -> _Keeper:
        self._keep_message()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop renewing (the run ended here, or is being let go)."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    def _keep_message(self) -> None:
        if self.keepalive is None:
            return
        try:
            self.keepalive(self.lease_seconds + LEASE_GRACE_SECONDS)
        except Exception:  # noqa: BLE001 - the lease, not the message, guards the run
            logger.warning("message visibility not extended", exc_info=True,
                           extra={"run_id": self.recorder.run_id})

    def _loop(self) -> None:
        period = self.lease_seconds / 3
        while not self.stopping.wait(period / 2):
            if time.monotonic() - self.recorder.written_at < period:
                continue
            try:
                self.recorder.renew(self.lease_seconds)
            except LeaseLostError:
                logger.warning("lease lost", extra={"run_id": self.recorder.run_id})
                return
            except StepstreamError:
                logger.warning("lease not renewed", exc_info=True,
                               extra={"run_id": self.recorder.run_id})
                continue
            if self.recorder.cancel_requested:
                self.wake.set()
            self._keep_message()


class _RunControl:
    """The runner's ``Control`` for one run: its recorder's cancel flag and a time budget."""

    def __init__(self, recorder: _StoredRecorder, budget: Budget | None,
                 wake: threading.Event) -> None:
        self.recorder = recorder
        self.budget = budget or Budget()
        self.wake = wake
        self.checked_at = time.monotonic()

    @property
    def step_allowance(self) -> float | None:
        return self.budget.step_allowance

    @property
    def worked(self) -> bool:
        return self.budget.worked

    @worked.setter
    def worked(self, value: bool) -> None:
        self.budget.worked = value

    def cancelled(self) -> bool:
        """Whether a cancel was requested, as the last write saw it, or asked afresh.

        Writes tell of a cancel; when none was made for ``CANCEL_CHECK_SECONDS`` (a
        long step ran), the run's record is read, so a cancel is never missed for
        long between steps that write nothing.
        """
        recorder = self.recorder
        if recorder.cancel_requested:
            return True
        now = time.monotonic()
        if now - max(recorder.written_at, self.checked_at) > CANCEL_CHECK_SECONDS:
            self.checked_at = now
            recorder.cancel_requested = recorder.engine.store.cancel_requested(recorder.run_id)
        return recorder.cancel_requested

    def time_left(self) -> float | None:
        return self.budget.time_left()

    def wait(self, seconds: float) -> None:
        """Pause for a retry's backoff, ending early on a cancel (looked for every second)."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self.wake.wait(min(left, CANCEL_CHECK_SECONDS)) or self.cancelled():
                return


class Budget:
    """The time one invocation may spend on runs, shared by the runs of its batch.

    Args:
        remaining: Seconds left in the invocation (Lambda's context); None: no limit.
        step_allowance: The most time a step is taken to need (``Control``); a
            request's budget sets 0, so a sync run goes on while any time is left
            and hands on only at the margin, whatever its steps' deadlines.
    """

    def __init__(self, remaining: Callable[[], float] | None = None,
                 step_allowance: float | None = None) -> None:
        self.remaining = remaining
        self.step_allowance = step_allowance
        # Whether a step ran yet in this invocation: until one has, nothing is handed on.
        self.worked = False

    def time_left(self) -> float | None:
        """Seconds left, or None."""
        return None if self.remaining is None else self.remaining()


@functools.lru_cache(maxsize=PARSED_WORKFLOWS)
def _parsed(yaml_content: str) -> Workflow:
    """``parse_workflow``, once per distinct definition in this process.

    A run snapshots its workflow's YAML, and every run of a workflow parses the same
    text; a checked ``Workflow`` is never changed by a run, so one can serve them all.
    """
    return parse_workflow(yaml_content)


def redact(headers: dict[str, str]) -> dict[str, str]:
    """Request headers with credentials replaced, fit to store and show."""
    def secret(name: str) -> bool:
        lower = name.lower()
        return lower in SECRET_HEADERS or any(word in lower for word in SECRET_HEADER_WORDS)

    return {name: "[redacted]" if secret(name) else value for name, value in headers.items()}


def _step_view(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored step result in the API's shape: where its output is kept is the store's."""
    if result is None or "spilled" not in result:
        return result
    return {key: value for key, value in result.items() if key != "spilled"}


def run_view(
    record: dict[str, Any], detail: bool = False, stream_url: str | None = None
) -> dict[str, Any]:
    """A stored run in the API's shape; ``detail`` adds input and per-step results."""
    view = {key: record.get(key) for key in RUN_FIELDS if key != "id"}
    view = {"id": record["run_id"], "run_id": record["run_id"], **view}
    # A cancel of a running run sets the flag; one of a run no executor held ends it.
    view["cancel_requested"] = (bool(record.get("cancel_requested"))
                                or record.get("status") == "cancelled")
    # Only a run whose item could not hold its results has them dropped.
    view["results_shed"] = bool(record.get("results_shed"))
    view["workflow_name"] = record.get("workflow_name")
    if stream_url:
        view["stream_url"] = stream_url
    if detail:
        view["trigger_data"] = record.get("trigger_data")
        results = record.get("steps", {})
        missing = ({"status": "unrecorded", "error_message": SHED_MESSAGE}
                   if view["results_shed"] else {"status": "pending", "error_message": None})
        view["steps"] = [
            _step_view(results.get(step_id))
            or {"step_id": step_id, "node_type": node_type, "output_data": None, **missing}
            for step_id, node_type in record.get("step_order", [])
        ]
    return view


def workflow_view(record: dict[str, Any], detail: bool = False) -> dict[str, Any]:
    """A stored workflow in the API's shape; ``detail`` adds its YAML and steps."""
    view = {
        "id": record["workflow_id"],
        "name": record["name"],
        "description": record.get("description", ""),
        "trigger_path": record["trigger_path"],
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
    }
    if "warnings" in record:
        view["warnings"] = record["warnings"]
    if detail:
        view["yaml_content"] = record["yaml_content"]
        view["steps"] = [step.config for step in parse_workflow(record["yaml_content"]).steps]
    return view


class Engine:
    """Stepstream's operations over its storage, queue and live event path.

    Args:
        settings: Table, queue and Redis locations.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.workflows_table, settings.runs_table, settings.events_table)
        self.sqs = boto3.client("sqs")
        self.publisher = RedisPublisher.from_url(settings.redis_url) if settings.redis_url else None

    # -- workflows -----------------------------------------------------------------

    def register_workflow(self, yaml_content: str) -> dict[str, Any]:
        """Check and store a workflow; raises ``WorkflowInvalidError`` or ``ConflictError``.

        The returned record also lists the workflow's ``warnings`` (not stored).
        """
        workflow = parse_workflow(yaml_content)
        at = now_iso()
        record = {
            "workflow_id": str(uuid.uuid4()),
            "name": workflow.name,
            "description": workflow.description,
            "trigger_path": workflow.trigger_path,
            "yaml_content": yaml_content,
            "created_at": at,
            "updated_at": at,
        }
        self.store.put_workflow(record)
        logger.info("workflow registered", extra={"workflow_id": record["workflow_id"]})
        return {**record, "warnings": [problem.as_dict() for problem in workflow.warnings]}

    # -- runs ----------------------------------------------------------------------

    def stream_url(self, run_id: str) -> str | None:
        """Where to watch ``run_id``, with a fresh token; None if the stream URL is unknown."""
        settings = self.settings
        if not settings.stream_url:
            return None
        return tokens.stream_url(settings.stream_url, settings.stream_token_secret, run_id)

    def create_run(
        self, workflow_id: str, data: Any, headers: dict[str, str] | None, status: str,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Store a new run of ``workflow_id`` with input ``data`` in ``status``.

        ``run_id`` is the new run's id when the caller chose it (an idempotency key
        reserved it first); otherwise a fresh one.
        """
        size = _json.size(_json.dumps(data))
        if size > MAX_INPUT_BYTES:
            raise InputTooLargeError(
                f"the run's input is {size} bytes of JSON; the limit is {MAX_INPUT_BYTES}"
            )
        record = self.store.get_workflow(workflow_id)
        workflow = _parsed(record["yaml_content"])
        run = {
            "run_id": run_id or str(uuid.uuid4()),
            "workflow_id": workflow_id,
            "workflow_name": workflow.name,
            "status": status,
            "trigger_data": data,
            "trigger_headers": redact(headers or {}),
            "step_order": [[step.id, step.type] for step in workflow.steps],
            "yaml_content": record["yaml_content"],
            "total_steps": len(workflow.steps),
            "steps_completed": 0,
            "created_at": now_iso(),
        }
        if status == "running":
            # Created running: this process holds the run, as a claim would give it.
            run.update(started_at=run["created_at"], lease_owner=str(uuid.uuid4()),
                       lease_until=time.time() + self.settings.lease_seconds, attempt=1)
        self.store.put_run(run)
        return run

    def enqueue_run(self, run_id: str, delay: float = 0, reason: str = "start") -> None:
        """Send a run to the executor, ``delay`` seconds from now.

        Raises:
            StorageError: The queue refused; a run that was to start is failed.
        """
        body = _json.dumps({"run_id": run_id, "reason": reason})
        seconds = max(0, min(MAX_QUEUE_DELAY_SECONDS, math.ceil(delay)))
        try:
            self.sqs.send_message(QueueUrl=self.settings.run_queue_url, MessageBody=body,
                                  DelaySeconds=seconds)
        except ClientError as exc:
            if reason == "start":
                self.fail_run(run_id, "the run could not be queued")
            raise StorageError("the run queue refused the run") from exc

    def execute_run(
        self,
        run_id: str,
        run: dict[str, Any] | None = None,
        budget: Budget | None = None,
        keepalive: Callable[[float], None] | None = None,
    ) -> dict[str, Any] | None:
        """Take a run and execute it, to its end or until it must wait; see ``Claim``.

        A run that another executor holds, or that waits for a retry, is left alone;
        a message is sent to look again when it may be taken (so a run whose executor
        died is taken up even if that executor's message was lost). A run that has
        ended gets its terminal event written if a crash left it unwritten.

        Args:
            run_id: The run.
            run: The run's record when the caller created it ``running`` itself;
                otherwise the run is claimed first.
            budget: The invocation's time; a run handed on for lack of it is queued.
            keepalive: Extends the visibility of the message that carried the run,
                by the given seconds, while the lease is renewed.

        Returns:
            The run's record as this executor left it; None if it did not execute it.

        Raises:
            NotFoundError: No such run.
        """
        try:
            if run is None:
                claim = self.store.claim_run(run_id, str(uuid.uuid4()), time.time(),
                                             self.settings.lease_seconds)
                if claim.state != "claimed":
                    self._pass_over(run_id, claim)
                    return None
                run = claim.record
            seq = run.get("last_seq", 0)
            if int(run.get("attempt", 1)) > 1 or seq:
                seq = max(seq, self.store.last_event_seq(run_id))
        except StorageError as exc:
            # As for a failure mid-run: the message comes back in seconds, not after
            # the queue's whole visibility timeout.
            if exc.retryable:
                self._bring_back(run_id, keepalive)
            raise
        recorder = _StoredRecorder(self, run_id, run["lease_owner"], {"steps": {}, **run}, seq)
        recorder.cancel_requested = bool(run.get("cancel_requested"))
        wake = threading.Event()
        with _Keeper(recorder, self.settings.lease_seconds, keepalive, wake) as keeper:
            try:
                self._execute(run, recorder, _RunControl(recorder, budget, wake))
            except LeaseLostError:
                # Another executor has the run now (this one was too slow to renew):
                # what this one did not record, that one does again.
                logger.warning("run taken over", extra={"run_id": run_id})
                return None
            except StorageError as exc:
                if not exc.retryable:
                    logger.exception("run aborted", extra={"run_id": run_id})
                    self._abort(recorder, f"the run could not go on: {exc}")
                    return self.store.get_run(run_id)
                # Storage failing for a moment must not fail the run for good: let it
                # go, and let the message come back soon to take it up from its
                # checkpoint (a sync run has its check message for that).
                logger.warning("run interrupted by storage", exc_info=True,
                               extra={"run_id": run_id})
                keeper.stop()
                self._let_go(recorder, keepalive)
                raise
            except Exception as exc:
                # Whatever broke (storage refusing an item, a definition that no longer
                # parses), the run must not stay "running" with nobody working on it.
                logger.exception("run aborted", extra={"run_id": run_id})
                self._abort(recorder, f"the run could not go on: {type(exc).__name__}: {exc}")
                return self.store.get_run(run_id)
        # The recorder kept the record as it wrote it: no read after the run.
        assert recorder.record is not None
        return recorder.record

    def _execute(self, run: dict[str, Any], recorder: _StoredRecorder,
                 control: _RunControl) -> None:
        run_id = run["run_id"]
        workflow: Workflow = _parsed(run["yaml_content"])
        recorder.blocking = frozenset(step.id for step in workflow.steps if may_block(step))
        trigger = {"body": run["trigger_data"], "headers": run.get("trigger_headers", {})}
        resume = self._resume_of(run, recorder)
        if resume is None and recorder.seq:
            # An attempt wrote events, then died before its first record write: the run
            # did start, and goes on from its first step as a resumed run.
            resume = Resume(Checkpoint(), {}, "recovered", int(run.get("attempt", 1)))
        outcome = run_workflow(workflow, run_id, trigger, recorder, control, resume)
        if outcome.status != "suspended":
            return
        wake_at = outcome.wake_at
        recorder.flush(release=Release(outcome.reason or "continuation", wake_at))
        delay = max(0.0, (wake_at or 0) - time.time())
        self.enqueue_run(run_id, delay, outcome.reason or "continuation")
        logger.info("run handed on", extra={"run_id": run_id, "reason": outcome.reason,
                                            "delay": round(delay, 3)})

    def _let_go(self, recorder: _StoredRecorder,
                keepalive: Callable[[float], None] | None) -> None:
        """Best effort: free the run's lease now and bring its message back soon."""
        try:
            self.store.renew_lease(recorder.run_id, recorder.owner, 0)
        except Exception:  # noqa: BLE001 - the lease ends by itself
            logger.warning("run not let go", exc_info=True, extra={"run_id": recorder.run_id})
        self._bring_back(recorder.run_id, keepalive)

    @staticmethod
    def _bring_back(run_id: str, keepalive: Callable[[float], None] | None) -> None:
        """Best effort: make the run's message visible again in RETRY_MESSAGE_SECONDS."""
        if keepalive is None:
            return
        try:
            keepalive(RETRY_MESSAGE_SECONDS)
        except Exception:  # noqa: BLE001 - it comes back after its visibility timeout anyway
            logger.warning("message not brought back", exc_info=True, extra={"run_id": run_id})

    def _resume_of(self, run: dict[str, Any], recorder: _StoredRecorder,
                   outputs: bool = True) -> Resume | None:
        """Where a run stored with a checkpoint goes on from; None for a fresh run.

        With ``outputs``, outputs kept apart from the run's item are read back whole,
        so the steps still to run read what they would have read in one process.
        """
        if not run.get("checkpoint"):
            return None
        results = run.get("steps") or {}
        # Counted as the runner counts (``_Run.restore``): a redriven run's steps that
        # were never reached do not count.
        recorder.restore(results, sum(map(reached, results.values())))
        if outputs:
            results = self.store.whole_outputs(results)
        checkpoint = self.store.whole_checkpoint(run["checkpoint"])
        return Resume(Checkpoint.from_dict(checkpoint), results,
                      run.get("resume_reason") or "recovered", int(run.get("attempt", 1)))

    def _pass_over(self, run_id: str, claim: Claim) -> None:
        """Leave a run this executor cannot take; make sure someone looks again."""
        if claim.state == "finished":
            self._repair_end(claim.record)
            return
        # Busy: if its executor dies, this message is the one that finds it. Waiting:
        # its wake-up message is on its way, but this one may be the only one left.
        logger.info("run not taken", extra={"run_id": run_id, "state": claim.state,
                                            "look_again_in": round(claim.wait, 3)})
        self.enqueue_run(run_id, claim.wait + 1, "check")

    def _repair_end(self, record: dict[str, Any]) -> None:
        """Write a finished run's terminal event if a crash left it out of the log."""
        end_event, last_seq = record.get("end_event"), int(record.get("last_seq", 0))
        run_id = record["run_id"]
        if not end_event or self.store.last_event_seq(run_id) >= last_seq:
            return
        event = _json.loads(end_event)
        self.store.put_events(run_id, [(event["seq"], event["type"], end_event)])
        if self.publisher is not None:
            self.publisher.publish_many(run_id, [(event["seq"], end_event)])
        logger.warning("terminal event repaired", extra={"run_id": run_id})

    def _abort(self, recorder: _StoredRecorder, error: str) -> None:
        """Best effort: mark the run failed and end its stream with ``run_failed``."""
        try:
            recorder.emit("run_failed", {"status": "failed", "error": error})
        except Exception:  # noqa: BLE001 - already failing; the log has the first error
            logger.exception("run could not be marked failed", extra={"run_id": recorder.run_id})

    def fail_run(self, run_id: str, error: str) -> bool:
        """Fail a run that has not ended, whoever holds it; False if it had ended.

        For runs nobody can finish: the queue refused them, or their message went to
        the dead-letter queue. An executor still working on it loses its lease.

        Known window: such an executor may still write one batch of events (a batch
        write has no condition) before its next record write is refused, and that
        batch may overwrite the ``run_failed`` written here. Its message is then in the
        dead-letter queue already, so nothing repairs the stream's end; the record is
        right. It takes an executor alive after five failed deliveries of its message.
        """
        claim = self.store.claim_run(run_id, str(uuid.uuid4()), time.time(),
                                     self.settings.lease_seconds, mode="force")
        if claim.state != "claimed":
            return False
        self._end_as(claim.record, "failed", error, "crash")
        return True

    def _end_as(self, run: dict[str, Any], status: str, error: str | None,
                kind: str | None = None) -> _StoredRecorder:
        """End ``run`` (claimed here) as its executor would have; see ``runner.end_run``."""
        run_id = run["run_id"]
        seq = max(int(run.get("last_seq", 0)), self.store.last_event_seq(run_id))
        recorder = _StoredRecorder(self, run_id, run["lease_owner"], {"steps": {}, **run}, seq,
                                   gather=True)
        resume = self._resume_of(run, recorder, outputs=False)  # ending reads no output
        end_run(_parsed(run["yaml_content"]), run_id, recorder, resume, status, error, kind)
        return recorder

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        """Cancel a run that has not ended.

        A run no executor is working on (queued, or waiting to retry) is cancelled
        here and now. A run in progress is asked to stop: its executor ends it with
        ``run_cancelled`` before its next step, and never interrupts a step midway.

        Returns:
            The run's record: ``cancelled``, or still ``running`` with ``cancel_requested``.

        Raises:
            NotFoundError: No such run.
            RunStateError: It has ended already.
        """
        claim = self.store.claim_run(run_id, str(uuid.uuid4()), time.time(),
                                     self.settings.lease_seconds, mode="cancel")
        if claim.state == "claimed":
            recorder = self._end_as(claim.record, "cancelled", None)
            assert recorder.record is not None
            return recorder.record
        if claim.state == "finished":
            status = claim.record.get("status")
            raise RunStateError(f"run {run_id} is {status}; it cannot be cancelled")
        return self.store.request_cancel(run_id)

    def redrive_run(self, run_id: str) -> dict[str, Any]:
        """Queue a failed run to go on from the step that failed, earlier outputs kept.

        Raises:
            NotFoundError: No such run.
            RunStateError: It has not failed.
            StorageError: The queue refused; the run is failed again, as it was.
        """
        before = self.store.get_run(run_id)
        if before.get("results_shed"):
            raise RunStateError(f"run {run_id} outgrew DynamoDB's item limit and its step "
                                "results were dropped: there is nothing to go on from")
        record = self.store.requeue_failed(
            run_id, sum(map(reached, (before.get("steps") or {}).values())))
        try:
            self.enqueue_run(run_id, 0, "redrive")
        except StorageError:
            with contextlib.suppress(RunStateError):  # an executor took it up meanwhile
                self.store.unqueue_redrive(before)
            raise
        return record

    def run_inline(
        self, workflow_id: str, data: Any, headers: dict[str, str] | None,
        run_id: str | None = None, budget: Budget | None = None,
    ) -> dict[str, Any]:
        """Create a run and execute it in this process (sync ``execute``, webhooks).

        A run that must wait (a long retry backoff) or outlasts ``budget`` goes on
        in the executor; the record returned is then still ``running``.
        """
        run = self.create_run(workflow_id, data, headers, "running", run_id)
        # If this process dies mid-run, this message finds the run once its lease ends;
        # without it, the run would not be safe to start.
        try:
            self.enqueue_run(run["run_id"], self.settings.lease_seconds + 1, "check")
        except StorageError:
            self.fail_run(run["run_id"], "the run could not be queued")
            raise
        finished = self.execute_run(run["run_id"], run, budget)
        return finished or self.store.get_run(run["run_id"])
