"""What the handlers call: register workflows, start runs, execute them, read them.

One ``Engine`` per process, built from ``Settings``; it holds the AWS and Redis
clients so warm invocations reuse their connections.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stepstream import _json, tokens
from stepstream.config import Settings
from stepstream.definition import Workflow, parse_workflow
from stepstream.errors import InputTooLargeError, StorageError
from stepstream.events import TERMINAL_TYPES, RedisPublisher
from stepstream.nodes import may_block
from stepstream.runner import StepResult, now_iso, run_workflow
from stepstream.store import RunEnd, SeqGuard, Store

logger = logging.getLogger(__name__)

# Events a recorder gathers at most before writing them (see ``_StoredRecorder``).
FLUSH_EVENTS = 25
# Parsed definitions kept per process, by their YAML text.
PARSED_WORKFLOWS = 64
# A run's input is stored with the run (DynamoDB items hold 400 KB); past this, refused.
MAX_INPUT_BYTES = 128 * 1024
# Request headers a webhook run keeps out of its input: they carry credentials.
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key",
                  "x-amz-security-token")
SECRET_HEADER_WORDS = ("signature", "token", "secret", "password")
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
)


class _StoredRecorder:
    """Writes a run's events (table, then Redis) and step results, in batches.

    An event waits in the recorder until the run reaches a point where a reader
    could otherwise be kept waiting, and is then written with every event and step
    result gathered before it: the results (and the guard of the batch's seqs) in one
    update of the run's record, the events in one batch write, then one Redis round
    trip. The points:

    - a ``step_started`` of a step that may block (an http or llm call, a webhook),
      before the step runs;
    - a ``step_progress`` (an llm step's answer so far);
    - the terminal event, with the run's end, which is written to the record first;
    - ``FLUSH_EVENTS`` events gathered.

    Steps that stay in the process take microseconds, so their events reach a reader
    at the same moment either way; the run pays a write per batch, not per event.

    Args:
        engine: Where to write.
        run_id: The run.
        record: The run's record, kept current as results are written; None if unknown.
    """

    def __init__(self, engine: Engine, run_id: str, record: dict[str, Any] | None = None) -> None:
        self.engine = engine
        self.run_id = run_id
        self.record = record
        self.seq = 0
        self.executions: dict[str, list[dict[str, Any]]] = {}
        # Steps whose start is written before they run; None: every step's.
        self.blocking: frozenset[str] | None = None
        self.events: list[tuple[int, str, str]] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.steps_completed = 0
        # The run record's last_seq as this recorder last set it (see ``SeqGuard``).
        self.guarded = 0

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        self.seq += 1
        event = {"type": event_type, "run_id": self.run_id, "seq": self.seq,
                 "timestamp": now_iso(), **data}
        self.events.append((self.seq, event_type, _json.dumps(event)))
        if event_type in TERMINAL_TYPES:
            # The run record is final before anyone can read the terminal event, so a
            # client that saw run_completed and then GETs the run never sees "running".
            self.flush(RunEnd(data["status"], event["timestamp"], data.get("error")))
        elif self._waits(event_type, data) or len(self.events) >= FLUSH_EVENTS:
            self.flush()

    def _waits(self, event_type: str, data: dict[str, Any]) -> bool:
        """Whether a reader would wait for this event if it were held back."""
        if event_type == "step_progress":
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

    def flush(self, finish: RunEnd | None = None) -> None:
        """Write what was gathered: step results and ``finish``, then events, then Redis.

        What is taken is forgotten before it is written: after a failed write, a
        later flush (the ``run_failed`` of an abort) does not try it again.
        """
        events, results = self.events, list(self.results.values())
        self.events, self.results = [], {}
        # A batch is written without a condition per event: the record guards its seqs.
        guard = SeqGuard(self.guarded, events[-1][0]) if len(events) > 1 else None
        stored = self.engine.store.put_steps(self.run_id, results, self.steps_completed, finish,
                                             guard)
        self._remember(stored, finish, guard)
        if events:
            self.engine.store.put_events(self.run_id, events)
        if events and self.engine.publisher is not None:
            self.engine.publisher.publish_many(
                self.run_id, [(seq, text) for seq, _type, text in events])

    def _remember(
        self, stored: list[dict[str, Any]], finish: RunEnd | None, guard: SeqGuard | None
    ) -> None:
        """Keep ``guarded`` and ``record`` as the table now has them."""
        if guard is not None:
            self.guarded = guard.last
        if self.record is None:
            return
        if guard is not None:
            self.record["last_seq"] = guard.last
        self.record.setdefault("steps", {}).update({step["step_id"]: step for step in stored})
        if stored:
            self.record["steps_completed"] = self.steps_completed
        if finish is not None:
            self.record.update(status=finish.status, completed_at=finish.completed_at)
            if finish.error:
                self.record["error_message"] = finish.error


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


def run_view(
    record: dict[str, Any], detail: bool = False, stream_url: str | None = None
) -> dict[str, Any]:
    """A stored run in the API's shape; ``detail`` adds input and per-step results."""
    view = {key: record.get(key) for key in RUN_FIELDS if key != "id"}
    view = {"id": record["run_id"], "run_id": record["run_id"], **view}
    view["workflow_name"] = record.get("workflow_name")
    if stream_url:
        view["stream_url"] = stream_url
    if detail:
        view["trigger_data"] = record.get("trigger_data")
        results = record.get("steps", {})
        view["steps"] = [
            results.get(step_id)
            or {"step_id": step_id, "node_type": node_type, "status": "pending",
                "output_data": None, "error_message": None}
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
        self, workflow_id: str, data: Any, headers: dict[str, str] | None, status: str
    ) -> dict[str, Any]:
        """Store a new run of ``workflow_id`` with input ``data`` in ``status``."""
        size = len(_json.dumps(data))
        if size > MAX_INPUT_BYTES:
            raise InputTooLargeError(
                f"the run's input is {size} bytes of JSON; the limit is {MAX_INPUT_BYTES}"
            )
        record = self.store.get_workflow(workflow_id)
        workflow = _parsed(record["yaml_content"])
        run = {
            "run_id": str(uuid.uuid4()),
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
            run["started_at"] = run["created_at"]
        self.store.put_run(run)
        return run

    def enqueue_run(self, run_id: str) -> None:
        """Send a queued run to the executor; if the queue refuses, the run is failed."""
        body = _json.dumps({"run_id": run_id})
        try:
            self.sqs.send_message(QueueUrl=self.settings.run_queue_url, MessageBody=body)
        except ClientError as exc:
            self._abort(_StoredRecorder(self, run_id), "the run could not be queued")
            raise StorageError("the run queue refused the run") from exc

    def execute_run(self, run_id: str, run: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Run a stored run to its end; None if another executor already has it.

        Args:
            run_id: The run.
            run: The run's record when the caller created it ``running`` itself;
                otherwise the run is claimed from ``queued`` first.

        Raises:
            NotFoundError: No such run.
        """
        run = run or self.store.claim_run(run_id, now_iso())
        if run is None:
            logger.info("run already taken", extra={"run_id": run_id})
            return None
        recorder = _StoredRecorder(self, run_id, {"steps": {}, **run})
        try:
            workflow: Workflow = _parsed(run["yaml_content"])
            recorder.blocking = frozenset(step.id for step in workflow.steps if may_block(step))
            trigger = {"body": run["trigger_data"], "headers": run.get("trigger_headers", {})}
            run_workflow(workflow, run_id, trigger, recorder)
        except Exception as exc:
            # Whatever broke (storage refusing an item, a definition that no longer
            # parses), the run must not stay "running" with nobody working on it.
            logger.exception("run aborted", extra={"run_id": run_id})
            self._abort(recorder, f"the run could not go on: {type(exc).__name__}: {exc}")
            return self.store.get_run(run_id)
        # The recorder kept the record as it wrote it: no read after the run.
        assert recorder.record is not None
        return recorder.record

    def _abort(self, recorder: _StoredRecorder, error: str) -> None:
        """Best effort: mark the run failed and end its stream with ``run_failed``."""
        try:
            recorder.emit("run_failed", {"status": "failed", "error": error})
        except Exception:  # noqa: BLE001 - already failing; the log has the first error
            logger.exception("run could not be marked failed", extra={"run_id": recorder.run_id})

    def run_inline(
        self, workflow_id: str, data: Any, headers: dict[str, str] | None
    ) -> dict[str, Any]:
        """Create a run and execute it in this process (sync ``execute``, webhooks)."""
        run = self.create_run(workflow_id, data, headers, "running")
        finished = self.execute_run(run["run_id"], run)
        assert finished is not None  # a run this call created as running is its own
        return finished
