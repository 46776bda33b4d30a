"""DynamoDB storage of workflows, runs and events.

Three tables, all created from ``template.yaml``:

- workflows (key ``pk``): ``wf#<workflow_id>`` items hold a definition; a
  ``path#<trigger_path>`` guard item makes trigger paths unique, written in the
  same transaction as the workflow so neither exists without the other.
- runs (key ``run_id``): one item per run, with each step's result in the ``steps``
  map, the runner's ``checkpoint``, ``last_seq`` (the highest seq it has recorded) and
  its lease (``lease_owner``, ``lease_until``: see ``claim_run``); GSIs
  ``by_workflow`` and ``by_created`` list runs newest first. An output too large for
  the run's item is kept whole in ``<run_id>#output#<uuid>#<part>`` items beside it
  (see ``save_progress``), outside both GSIs; so is a large checkpoint
  (``<run_id>#checkpoint#...``).
- events (key ``run_id`` + ``seq``): each run's events in order, ``seq`` dense from 1.

User data is stored as JSON text (see ``_json``), never as DynamoDB numbers.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stepstream import _json
from stepstream.errors import (
    ConflictError,
    LeaseLostError,
    NotFoundError,
    RunStateError,
    StepstreamError,
    StorageError,
)

# Stored step results past this many bytes of JSON keep a summary of their output in
# the run's item, and the output itself in parts of at most SPILL_PART_BYTES of UTF-8
# (DynamoDB's item limit is 400 KB) in items of their own.
STEP_OUTPUT_LIMIT = 32_768
SPILL_PART_BYTES = 350_000
# A checkpoint past this many bytes of JSON (a failed attempt's large output, kept for
# after a retry wait) is kept apart the same way, the run's item naming where.
CHECKPOINT_LIMIT = 16_384
# When the run's item has less room than that for a batch of results (its input and
# YAML take up to 384 KiB of DynamoDB's 400 KB), each result gets its share of the room,
# but never less than this: a write that then does not fit is refused (too_large).
MIN_STEP_BYTES = 1_024
# DynamoDB's limit on the items of one BatchWriteItem, and how often (with a doubling
# pause from BATCH_BACKOFF_SECONDS) unprocessed items of a batch are sent again.
MAX_BATCH_ITEMS = 25
BATCH_ATTEMPTS = 5
BATCH_BACKOFF_SECONDS = 0.05
# Run attributes that are JSON text in DynamoDB and data in the API.
_JSON_ATTRIBUTES = ("trigger_data", "trigger_headers", "step_order", "checkpoint")
FINISHED = frozenset({"completed", "failed", "cancelled"})
# DynamoDB errors that a later try of the same request may not meet.
_TRANSIENT_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "TransactionConflictException",
    "TransactionInProgressException", "LimitExceededException",
})


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item with S and N attributes as Python values (N as int)."""
    out: dict[str, Any] = {}
    for key, typed in item.items():
        (kind, value), = typed.items()
        if kind == "N":
            out[key] = float(value) if "." in value or "e" in value.lower() else int(value)
        elif kind == "M":
            out[key] = {k: _json.loads(v["S"]) for k, v in value.items()}
        elif kind == "NULL":
            out[key] = None
        else:
            out[key] = value
    return out


def _run_record(item: dict[str, Any]) -> dict[str, Any]:
    record = _plain(item)
    for key in _JSON_ATTRIBUTES:
        if key in record:
            record[key] = _json.loads(record[key])
    return record


@dataclass(frozen=True)
class RunEnd:
    """How a run ended, as its record keeps it."""

    status: str
    completed_at: str
    error: str | None = None


@dataclass(frozen=True)
class Release:
    """A run let go of by its executor, to be taken up from the queue.

    Attributes:
        reason: Why: ``continuation`` or ``retry_wait`` (shown by ``run_resumed``).
        wake_at: Not before this (``time.time()``) may an executor take it up, if set.
    """

    reason: str
    wake_at: float | None = None


@dataclass(frozen=True)
class Progress:
    """What one write of a run's record carries (see ``Store.save_progress``).

    Attributes:
        steps: Step results, at most one per step id.
        steps_completed: The run's count of decided steps.
        last_seq: The highest seq of the run's events recorded so far.
        checkpoint: The runner's position, if it has one.
        finish: The run's end, if it ended.
        end_event: With ``finish``: the terminal event's JSON, kept to repair a crash
            between the write of the record and the write of that event.
        release: The executor lets the run go (see ``Release``).
        room: Bytes the results of ``steps`` may take in the run's item together,
            if fewer than ``STEP_OUTPUT_LIMIT`` each (see ``save_progress``).
        shed: The run's item is full even so: drop the step results stored in it (its
            events keep them) and mark it ``results_shed``, so that the run can end.
    """

    steps: list[dict[str, Any]]
    steps_completed: int
    last_seq: int
    checkpoint: dict[str, Any] | None = None
    finish: RunEnd | None = None
    end_event: str | None = None
    release: Release | None = None
    room: int | None = None
    shed: bool = False


@dataclass(frozen=True)
class Claim:
    """What came of trying to take a run (``Store.claim_run``).

    Attributes:
        state: ``claimed``; ``finished`` (it has ended); ``busy`` (another executor's
            lease is live); ``waiting`` (it may not go on before ``wake_at``).
        record: The run: as claimed, or as found.
        wait: For ``busy`` and ``waiting``: seconds until it may be taken.
    """

    state: str
    record: dict[str, Any]
    wait: float = 0.0


@dataclass(frozen=True)
class _Bounded:
    """A step result fit for the run's item, and the parts of an output kept apart."""

    step: dict[str, Any]
    text: str
    parts: list[bytes]


def _spill(run_id: str, what: str, text: str) -> tuple[dict[str, Any], list[bytes]]:
    """Where JSON ``text`` is kept apart from the run's item (``spilled``), and its parts."""
    data = text.encode()
    parts = [data[at : at + SPILL_PART_BYTES] for at in range(0, len(data), SPILL_PART_BYTES)]
    return {"key": f"{run_id}#{what}#{uuid.uuid4().hex}", "parts": len(parts)}, parts


def _bounded(run_id: str, step: dict[str, Any], limit: int = STEP_OUTPUT_LIMIT) -> _Bounded:
    """A step result fit to store: past ``limit``, its output is summarised and kept apart.

    The result names where (``spilled``: the parts' key prefix and count), so a run
    taken up elsewhere reads the output whole (``Store.whole_outputs``). A loop
    history that still does not fit is dropped.
    """
    text = _json.dumps(step)
    if _json.size(text) <= limit:
        return _Bounded(step, text, [])
    spilled, parts = _spill(run_id, "output", _json.dumps(step.get("output_data")))
    step = {**step, "output_data": _json.summary(step.get("output_data"), limit // 2),
            "spilled": spilled}
    text = _json.dumps(step)
    if _json.size(text) > limit:
        step.pop("executions", None)
        text = _json.dumps(step)
    return _Bounded(step, text, parts)


class _Update:
    """An UpdateItem's ``SET`` and ``REMOVE`` clauses, names and values, gathered one by one."""

    def __init__(self) -> None:
        self.assignments: list[str] = []
        self.removals: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.condition = ""

    def set(self, path: str, placeholder: str, value: Any,
            names: dict[str, str] | None = None) -> None:
        self.assignments.append(f"{path} = {placeholder}")
        self.values[placeholder] = value
        self.names.update(names or {})

    def remove(self, path: str) -> None:
        self.removals.append(path)

    def parameters(self) -> dict[str, Any]:
        expression = "SET " + ", ".join(self.assignments)
        if self.removals:
            # REMOVE first: moto applies clauses in order and checks the size on the way.
            expression = "REMOVE " + ", ".join(self.removals) + " " + expression
        parameters = {"UpdateExpression": expression, "ExpressionAttributeValues": self.values}
        if self.names:
            parameters["ExpressionAttributeNames"] = self.names
        if self.condition:
            parameters["ConditionExpression"] = self.condition
        return parameters


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _lease_update(until: float) -> _Update:
    update = _Update()
    update.set("lease_until", ":until", _n(until))
    return update


def _storage_error(action: str, exc: ClientError) -> StorageError:
    error = exc.response.get("Error", {})
    code = error.get("Code", "Unknown")
    if code == "ValidationException" and "maximum allowed size" in error.get("Message", ""):
        return StorageError(f"DynamoDB refused {action}: the item would pass its 400 KB "
                            "limit", retryable=False, too_large=True)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    retryable = code in _TRANSIENT_CODES or status >= 500
    return StorageError(f"DynamoDB refused {action}: {code}", retryable=retryable)


class Store:
    """Workflows, runs and events in DynamoDB.

    Args:
        workflows_table: Name of the workflows table.
        runs_table: Name of the runs table.
        events_table: Name of the events table.
    """

    def __init__(self, workflows_table: str, runs_table: str, events_table: str) -> None:
        self.workflows_table = workflows_table
        self.runs_table = runs_table
        self.events_table = events_table
        self.client = boto3.client("dynamodb")

    # -- workflows -----------------------------------------------------------------

    def put_workflow(self, record: dict[str, Any]) -> None:
        """Store a new workflow; its trigger path must not be taken.

        Raises:
            ConflictError: Another workflow already has this trigger path.
        """
        item = {key: _s(str(value)) for key, value in record.items()}
        item["pk"] = _s(f"wf#{record['workflow_id']}")
        guard = {"pk": _s(f"path#{record['trigger_path']}"), "workflow_id": item["workflow_id"]}
        absent = "attribute_not_exists(pk)"
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self.workflows_table, "Item": guard,
                             "ConditionExpression": absent}},
                    {"Put": {"TableName": self.workflows_table, "Item": item,
                             "ConditionExpression": absent}},
                ]
            )
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                raise ConflictError(
                    f"a workflow with trigger path '{record['trigger_path']}' already exists"
                ) from exc
            raise _storage_error("the workflow write", exc) from exc

    def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        """The workflow record; raises ``NotFoundError`` if there is none."""
        key = {"pk": _s(f"wf#{workflow_id}")}
        item = self.client.get_item(TableName=self.workflows_table, Key=key).get("Item")
        if not item:
            raise NotFoundError("workflow", workflow_id)
        return _plain(item)

    def workflow_id_for_path(self, trigger_path: str) -> str:
        """The id of the workflow whose webhook path is ``trigger_path``."""
        key = {"pk": _s(f"path#{trigger_path}")}
        item = self.client.get_item(TableName=self.workflows_table, Key=key).get("Item")
        if not item:
            raise NotFoundError("trigger path", trigger_path)
        return item["workflow_id"]["S"]

    def list_workflows(self) -> list[dict[str, Any]]:
        """Every workflow, newest first, without its YAML text."""
        records: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("scan")
        pages = paginator.paginate(
            TableName=self.workflows_table,
            FilterExpression="begins_with(pk, :wf)",
            ExpressionAttributeValues={":wf": _s("wf#")},
        )
        for page in pages:
            records.extend(_plain(item) for item in page["Items"])
        for record in records:
            record.pop("yaml_content", None)
        return sorted(records, key=lambda r: r["created_at"], reverse=True)

    def delete_workflow(self, workflow_id: str) -> None:
        """Delete a workflow and free its trigger path; runs stay readable.

        Both deletes are conditional, so a late or repeated delete can never remove
        the trigger-path guard that a newer workflow has since written.
        """
        record = self.get_workflow(workflow_id)
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {"Delete": {"TableName": self.workflows_table,
                                "Key": {"pk": _s(f"path#{record['trigger_path']}")},
                                "ConditionExpression": "workflow_id = :id",
                                "ExpressionAttributeValues": {":id": _s(workflow_id)}}},
                    {"Delete": {"TableName": self.workflows_table,
                                "Key": {"pk": _s(f"wf#{workflow_id}")},
                                "ConditionExpression": "attribute_exists(pk)"}},
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise NotFoundError("workflow", workflow_id) from exc
            raise _storage_error("the workflow delete", exc) from exc

    # -- runs ----------------------------------------------------------------------

    def put_run(self, record: dict[str, Any]) -> None:
        """Store a new run record (``steps`` starts empty)."""
        item: dict[str, Any] = {"list_pk": _s("run"), "steps": {"M": {}}}
        for key, value in record.items():
            if key in _JSON_ATTRIBUTES:
                item[key] = _s(_json.dumps(value))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                item[key] = _n(value)
            elif value is not None:
                item[key] = _s(str(value))
        self.client.put_item(TableName=self.runs_table, Item=item)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run record with ``steps`` as a mapping of step id to result."""
        item = self.client.get_item(TableName=self.runs_table, Key={"run_id": _s(run_id)})
        if "Item" not in item:
            raise NotFoundError("run", run_id)
        return _run_record(item["Item"])

    def claim_run(
        self, run_id: str, owner: str, now: float, lease_seconds: float, mode: str = "run"
    ) -> Claim:
        """Take a run for ``owner`` with a lease of ``lease_seconds``; see ``Claim``.

        The lease is the one rule that keeps two executors off one run: a run is
        taken only when it is ``queued``, or ``running`` with no live lease
        (``lease_until`` past: its executor died or let it go) and no wake time ahead.
        One conditional write decides it, so of two executors claiming at once exactly
        one wins. The winner renews the lease while it works (``renew_lease``), and
        every write of its progress is conditional on still holding it, so an executor
        that lost its lease cannot record anything after the moment it lost it.

        Args:
            run_id: The run.
            owner: A token unique to this claim.
            now: The current ``time.time()``.
            lease_seconds: How long the lease lasts unless renewed.
            mode: ``run`` (above); ``cancel`` also takes a run waiting to wake;
                ``force`` takes any run that has not ended, lease or not.

        Raises:
            NotFoundError: There is no such run (a message naming a run that never was).
        """
        conditions = {
            "run": "#status = :queued OR (#status = :running AND "
                   "(attribute_not_exists(lease_until) OR lease_until < :now) AND "
                   "(attribute_not_exists(wake_at) OR wake_at <= :now))",
            "cancel": "#status = :queued OR (#status = :running AND "
                      "(attribute_not_exists(lease_until) OR lease_until < :now))",
            "force": "#status IN (:queued, :running)",
        }
        values = {":running": _s("running"), ":queued": _s("queued"), ":me": _s(owner),
                  ":until": _n(now + lease_seconds), ":at": _s(_iso(now)), ":zero": _n(0),
                  ":one": _n(1)}
        if mode != "force":
            values[":now"] = _n(now)
        try:
            answer = self.client.update_item(
                TableName=self.runs_table,
                Key={"run_id": _s(run_id)},
                UpdateExpression="SET #status = :running, lease_owner = :me, lease_until = :until, "
                "started_at = if_not_exists(started_at, :at), "
                "attempt = if_not_exists(attempt, :zero) + :one REMOVE wake_at, resume_reason",
                ConditionExpression=conditions[mode],
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise _storage_error("the run claim", exc) from exc
            if "Item" not in exc.response:
                raise NotFoundError("run", run_id) from exc
            return self._refusal(_run_record(exc.response["Item"]), now)
        record = _run_record(answer["Attributes"])
        record.update(status="running", lease_owner=owner, lease_until=now + lease_seconds,
                      attempt=int(record.get("attempt", 0)) + 1)
        record.setdefault("started_at", _iso(now))
        return Claim("claimed", record)

    @staticmethod
    def _refusal(record: dict[str, Any], now: float) -> Claim:
        if record.get("status") not in ("queued", "running"):
            return Claim("finished", record)
        lease_until = float(record.get("lease_until") or 0)
        if lease_until >= now:
            return Claim("busy", record, lease_until - now)
        return Claim("waiting", record, max(0.0, float(record.get("wake_at") or 0) - now))

    def renew_lease(self, run_id: str, owner: str, until: float) -> bool:
        """Extend ``owner``'s lease of a run; returns whether a cancel was requested.

        Raises:
            LeaseLostError: Another owner holds the run now.
        """
        return self._owned_update(run_id, owner, _lease_update(until), "the lease renewal")

    def save_progress(self, run_id: str, owner: str, progress: Progress,
                      lease_until: float) -> tuple[list[dict[str, Any]], bool]:
        """Record a run's progress in one write, if ``owner`` still holds its lease.

        Step results, the checkpoint, ``last_seq`` and the end (or the release) of
        the run go together, and the lease is extended on the way. A run's steps share
        one item (DynamoDB's limit: 400 KB), so an output larger than
        ``STEP_OUTPUT_LIMIT`` bytes of JSON (or than its share of ``progress.room``,
        when the item is filling up) is stored there as a marked, bounded summary, and
        whole in items of its own, written first under a new key: the record names them
        only once they are all there, and parts an executor wrote after losing its
        lease are never named.

        Returns:
            The step results as stored (bounded), and whether a cancel was requested.

        Raises:
            LeaseLostError: Another owner holds the run now; nothing was written.
            StorageError: DynamoDB refused.
        """
        limit = STEP_OUTPUT_LIMIT
        if progress.room is not None and progress.steps:
            limit = max(MIN_STEP_BYTES, min(limit, progress.room // len(progress.steps)))
        stored = [_bounded(run_id, step, limit) for step in progress.steps]
        kept_apart = [(bounded.step["spilled"], bounded.parts) for bounded in stored
                      if bounded.parts]
        checkpoint = None
        if progress.checkpoint is not None:
            checkpoint = _json.dumps(progress.checkpoint)
            if _json.size(checkpoint) > CHECKPOINT_LIMIT:
                spilled, parts = _spill(run_id, "checkpoint", checkpoint)
                kept_apart.append((spilled, parts))
                checkpoint = _json.dumps({"spilled": spilled})
        self._put_spilled(kept_apart)
        finish, release = progress.finish, progress.release
        # A run that ends, or is let go, frees its lease with the same write.
        update = _lease_update(0 if finish or release else lease_until)
        for n, bounded in enumerate(stored):
            update.set(f"steps.#s{n}", f":s{n}", _s(bounded.text),
                       {f"#s{n}": bounded.step["step_id"]})
        if progress.shed:
            update.remove("steps")
            update.set("results_shed", ":shed", {"BOOL": True})
        update.set("steps_completed", ":done", _n(progress.steps_completed))
        update.set("last_seq", ":last", _n(progress.last_seq))
        if checkpoint is not None:
            update.set("checkpoint", ":checkpoint", _s(checkpoint))
        if finish is not None:
            update.set("#status", ":status", _s(finish.status), {"#status": "status"})
            update.set("completed_at", ":at", _s(finish.completed_at))
            if finish.error:
                update.set("error_message", ":error", _s(finish.error))
            if progress.end_event is not None:
                update.set("end_event", ":end", _s(progress.end_event))
        if release is not None:
            update.set("resume_reason", ":reason", _s(release.reason))
            if release.wake_at is not None:
                update.set("wake_at", ":wake", _n(release.wake_at))
        cancelled = self._owned_update(run_id, owner, update, f"the progress of run {run_id}")
        return [bounded.step for bounded in stored], cancelled

    def _put_spilled(self, kept_apart: list[tuple[dict[str, Any], list[bytes]]]) -> None:
        """Write the parts of what is kept apart from the run's item, by their ``spilled``."""
        requests = [
            {"PutRequest": {"Item": {"run_id": _s(f"{spilled['key']}#{n}"), "part": {"B": part}}}}
            for spilled, parts in kept_apart for n, part in enumerate(parts)
        ]
        for start in range(0, len(requests), MAX_BATCH_ITEMS):
            self._batch_write(self.runs_table, requests[start : start + MAX_BATCH_ITEMS],
                              "the parts of a large output")

    def _read_spilled(self, spilled: dict[str, Any], what: str) -> Any:
        """The JSON value kept apart in the parts ``spilled`` names.

        Raises:
            StorageError: DynamoDB refused, or a part is missing.
        """
        parts = []
        for n in range(int(spilled["parts"])):
            key = {"run_id": _s(f"{spilled['key']}#{n}")}
            try:
                item = self.client.get_item(TableName=self.runs_table, Key=key,
                                            ConsistentRead=True).get("Item")
            except ClientError as exc:
                raise _storage_error(f"part {n} of {what}", exc) from exc
            if item is None:
                raise StorageError(f"part {n} of {what} is missing")
            parts.append(item["part"]["B"])
        return _json.loads(b"".join(parts))

    def whole_outputs(self, results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """``results`` with each output that was kept apart (``spilled``) read back whole.

        Raises:
            StorageError: DynamoDB refused, or a part is missing.
        """
        return {
            step_id: {**result, "output_data": self._read_spilled(
                result["spilled"], f"the output of step {step_id}")}
            if result.get("spilled") else result
            for step_id, result in results.items()
        }

    def whole_checkpoint(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """A run's checkpoint as the runner wrote it, read back if it was kept apart.

        Raises:
            StorageError: DynamoDB refused, or a part is missing.
        """
        if "spilled" not in checkpoint:
            return checkpoint
        return self._read_spilled(checkpoint["spilled"], "the run's checkpoint")

    def _owned_update(self, run_id: str, owner: str, update: _Update, what: str) -> bool:
        """Apply ``update`` if ``owner`` holds the run; True if a cancel was requested.

        The first try also asks that no cancel be pending; when one is, the update is
        applied without that condition and the caller is told.
        """
        update.values[":owner"] = _s(owner)
        for check_cancel in (True, False):
            update.condition = "lease_owner = :owner" + (
                " AND attribute_not_exists(cancel_requested)" if check_cancel else "")
            try:
                self.client.update_item(TableName=self.runs_table, Key={"run_id": _s(run_id)},
                                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                                        **update.parameters())
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise _storage_error(what, exc) from exc
                item = exc.response.get("Item", {})
                if item.get("lease_owner", {}).get("S") != owner:
                    raise LeaseLostError(f"run {run_id} has another executor now") from exc
                continue  # ours, with a cancel pending
            return not check_cancel
        raise AssertionError("unreachable: the second try has no cancel condition")

    def cancel_requested(self, run_id: str) -> bool:
        """Whether a cancel of the run was requested (an eventually consistent read)."""
        try:
            answer = self.client.get_item(TableName=self.runs_table,
                                          Key={"run_id": _s(run_id)},
                                          ProjectionExpression="cancel_requested")
        except ClientError as exc:
            raise _storage_error(f"the cancel flag of run {run_id}", exc) from exc
        return bool(answer.get("Item", {}).get("cancel_requested", {}).get("BOOL"))

    def request_cancel(self, run_id: str) -> dict[str, Any]:
        """Ask the executor of a running run to stop before its next step.

        Raises:
            RunStateError: The run is not running.
        """
        return self._update_in_state(
            run_id, "running", "cancelled", "SET cancel_requested = :yes",
            {":yes": {"BOOL": True}},
        )

    def requeue_failed(self, run_id: str, steps_completed: int) -> dict[str, Any]:
        """Move a failed run back to ``queued`` to go on from its checkpoint (a redrive).

        Args:
            run_id: The run.
            steps_completed: Its count of the steps it really got to.

        Raises:
            RunStateError: The run has not failed.
        """
        return self._update_in_state(
            run_id, "failed", "redriven",
            "SET #status = :queued, resume_reason = :redrive, steps_completed = :done "
            "REMOVE completed_at, error_message, end_event, wake_at, lease_owner, "
            "lease_until, cancel_requested",
            {":queued": _s("queued"), ":redrive": _s("redrive"), ":done": _n(steps_completed)},
        )

    def unqueue_redrive(self, failed: dict[str, Any]) -> None:
        """Put a redriven run whose message the queue refused back as it was: failed.

        Args:
            failed: The run's record from before ``requeue_failed``.

        Raises:
            RunStateError: The run is no longer queued.
        """
        expression, values = "SET #status = :failed", {":failed": _s("failed")}
        for key in ("completed_at", "error_message", "end_event"):
            if failed.get(key) is not None:
                expression += f", {key} = :{key}"
                values[f":{key}"] = _s(str(failed[key]))
        self._update_in_state(failed["run_id"], "queued", "returned to failed",
                              expression + " REMOVE resume_reason", values)

    def _update_in_state(self, run_id: str, status: str, action: str, expression: str,
                         values: dict[str, Any]) -> dict[str, Any]:
        """Apply ``expression`` to a run that is in ``status``; the run as it is after."""
        try:
            answer = self.client.update_item(
                TableName=self.runs_table, Key={"run_id": _s(run_id)},
                UpdateExpression=expression, ConditionExpression="#status = :in_state",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={**values, ":in_state": _s(status)},
                ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            raise self._state_error(action, run_id, exc) from exc
        return _run_record(answer["Attributes"])

    @staticmethod
    def _state_error(action: str, run_id: str, exc: ClientError) -> StepstreamError:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            return _storage_error(f"the run {action} request", exc)
        if "Item" not in exc.response:
            return NotFoundError("run", run_id)
        status = exc.response["Item"].get("status", {}).get("S", "unknown")
        return RunStateError(f"run {run_id} is {status}; it cannot be {action}")

    def finish_run(self, run_id: str, status: str, completed_at: str, error: str | None) -> None:
        """Record a run's terminal status, whoever holds it (no events are written)."""
        update = _Update()
        update.set("#status", ":status", _s(status), {"#status": "status"})
        update.set("completed_at", ":at", _s(completed_at))
        if error:
            update.set("error_message", ":error", _s(error))
        try:
            self.client.update_item(TableName=self.runs_table, Key={"run_id": _s(run_id)},
                                    **update.parameters())
        except ClientError as exc:
            raise _storage_error(f"the end of run {run_id}", exc) from exc

    def list_runs(
        self, workflow_id: str | None, status: str | None, page: int, page_size: int
    ) -> list[dict[str, Any]]:
        """Runs newest first, optionally of one workflow and/or one status."""
        query: dict[str, Any] = {
            "TableName": self.runs_table,
            "ScanIndexForward": False,
        }
        if workflow_id:
            query.update(IndexName="by_workflow", KeyConditionExpression="workflow_id = :key",
                         ExpressionAttributeValues={":key": _s(workflow_id)})
        else:
            query.update(IndexName="by_created", KeyConditionExpression="list_pk = :key",
                         ExpressionAttributeValues={":key": _s("run")})
        if status:
            query["FilterExpression"] = "#status = :status"
            query["ExpressionAttributeNames"] = {"#status": "status"}
            query["ExpressionAttributeValues"][":status"] = _s(status)
        skip, items = (page - 1) * page_size, []
        for result in self.client.get_paginator("query").paginate(**query):
            items.extend(result["Items"])
            if len(items) >= skip + page_size:
                break
        return [_run_record(item) for item in items[skip : skip + page_size]]

    # -- events --------------------------------------------------------------------

    def put_event(self, run_id: str, seq: int, event_type: str, data: str) -> None:
        """Append one event; a second write of the same ``seq`` is refused, not doubled.

        Raises:
            StorageError: DynamoDB refused, or the seq is taken (retryable).
        """
        try:
            self.client.put_item(
                TableName=self.events_table,
                Item={"run_id": _s(run_id), "seq": _n(seq), "type": _s(event_type),
                      "data": _s(data)},
                ConditionExpression="attribute_not_exists(seq)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                # Another writer got there: an executor whose lease ran out wrote late.
                # Retryable: the run is let go, and taken up after the highest seq.
                raise StorageError(f"event {seq} of run {run_id} is written already",
                                   retryable=True) from exc
            raise _storage_error(f"event {seq} of run {run_id}", exc) from exc

    def put_events(self, run_id: str, events: list[tuple[int, str, str]]) -> None:
        """Append ``(seq, type, data)`` events: one conditional put, or batches of 25.

        One event is written as ``put_event`` writes it. Several go in BatchWriteItem
        requests, which take no condition: only the holder of the run's lease writes
        them (see ``claim_run``). Items DynamoDB leaves unprocessed are sent again,
        with backoff.
        """
        if len(events) == 1:
            self.put_event(run_id, *events[0])
            return
        for start in range(0, len(events), MAX_BATCH_ITEMS):
            chunk = events[start : start + MAX_BATCH_ITEMS]
            requests = [{"PutRequest": {"Item": {"run_id": _s(run_id), "seq": _n(seq),
                                                 "type": _s(event_type), "data": _s(data)}}}
                        for seq, event_type, data in chunk]
            self._batch_write(self.events_table, requests,
                              f"events {chunk[0][0]}-{chunk[-1][0]} of run {run_id}")

    def _batch_write(self, table: str, requests: list[dict[str, Any]], what: str) -> None:
        """BatchWriteItem to ``table`` until DynamoDB has processed every item."""
        pending = {table: requests}
        for attempt in range(BATCH_ATTEMPTS):
            try:
                answer = self.client.batch_write_item(RequestItems=pending)
            except ClientError as exc:
                raise _storage_error(what, exc) from exc
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(BATCH_BACKOFF_SECONDS * 2**attempt)
        raise StorageError(f"DynamoDB left {what} unprocessed {BATCH_ATTEMPTS} times")

    def last_event_seq(self, run_id: str) -> int:
        """The highest seq stored for ``run_id`` (0: none)."""
        try:
            result = self.client.query(
                TableName=self.events_table,
                KeyConditionExpression="run_id = :run",
                ExpressionAttributeValues={":run": _s(run_id)},
                ProjectionExpression="seq", ScanIndexForward=False, Limit=1,
            )
        except ClientError as exc:
            raise _storage_error(f"the last event of run {run_id}", exc) from exc
        return int(result["Items"][0]["seq"]["N"]) if result["Items"] else 0

    def events_after(self, run_id: str, after: int, limit: int = 500) -> list[dict[str, Any]]:
        """Up to ``limit`` events of ``run_id`` with ``seq > after``, in order."""
        result = self.client.query(
            TableName=self.events_table,
            KeyConditionExpression="run_id = :run AND seq > :after",
            ExpressionAttributeValues={":run": _s(run_id), ":after": _n(after)},
            Limit=limit,
        )
        return [_json.loads(item["data"]["S"]) for item in result["Items"]]
