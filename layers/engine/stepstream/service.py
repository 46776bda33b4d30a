"""What the handlers call: register workflows, start runs, execute them, read them.

One ``Engine`` per process, built from ``Settings``; it holds the AWS and Redis
clients so warm invocations reuse their connections.
"""

from __future__ import annotations

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
from stepstream.runner import StepResult, now_iso, run_workflow
from stepstream.store import Store

logger = logging.getLogger(__name__)

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
    """Writes a run's events (table, then Redis) and step results as they happen."""

    def __init__(self, engine: Engine, run_id: str) -> None:
        self.engine = engine
        self.run_id = run_id
        self.seq = 0
        self.executions: dict[str, list[dict[str, Any]]] = {}

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        self.seq += 1
        event = {"type": event_type, "run_id": self.run_id, "seq": self.seq,
                 "timestamp": now_iso(), **data}
        if event_type in TERMINAL_TYPES:
            # The run record is final before anyone can read the terminal event, so a
            # client that saw run_completed and then GETs the run never sees "running".
            self.engine.store.finish_run(self.run_id, data["status"], event["timestamp"],
                                         data.get("error"))
        text = _json.dumps(event)
        self.engine.store.put_event(self.run_id, self.seq, event_type, text)
        if self.engine.publisher is not None:
            self.engine.publisher.publish(self.run_id, self.seq, text)

    def step_done(self, result: StepResult, steps_completed: int) -> None:
        history = self.executions.setdefault(result.step_id, [])
        if result.iteration:
            history.append(result.as_dict())
        stored = result.as_dict()
        if len(history) > 1:
            # A step that ran in a loop keeps every execution, not just the last.
            stored["executions"] = history
        self.engine.store.put_step(self.run_id, stored, steps_completed)


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
        workflow = parse_workflow(record["yaml_content"])
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
        recorder = _StoredRecorder(self, run_id)
        try:
            workflow: Workflow = parse_workflow(run["yaml_content"])
            trigger = {"body": run["trigger_data"], "headers": run.get("trigger_headers", {})}
            run_workflow(workflow, run_id, trigger, recorder)
        except Exception as exc:
            # Whatever broke (storage refusing an item, a definition that no longer
            # parses), the run must not stay "running" with nobody working on it.
            logger.exception("run aborted", extra={"run_id": run_id})
            self._abort(recorder, f"the run could not go on: {type(exc).__name__}: {exc}")
        return self.store.get_run(run_id)

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
