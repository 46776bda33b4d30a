"""DynamoDB storage of workflows, runs and events.

Three tables, all created from ``template.yaml``:

- workflows (key ``pk``): ``wf#<workflow_id>`` items hold a definition; a
  ``path#<trigger_path>`` guard item makes trigger paths unique, written in the
  same transaction as the workflow so neither exists without the other.
- runs (key ``run_id``): one item per run, with each step's result in the ``steps``
  map and ``last_seq``, the guard of its batches of events (see ``SeqGuard``); GSIs
  ``by_workflow`` and ``by_created`` list runs newest first.
- events (key ``run_id`` + ``seq``): each run's events in order, ``seq`` dense from 1.

User data is stored as JSON text (see ``_json``), never as DynamoDB numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stepstream import _json
from stepstream.errors import ConflictError, NotFoundError, StorageError

# Stored step results past this many bytes of JSON keep a summary of their output.
STEP_OUTPUT_LIMIT = 32_768
# DynamoDB's limit on the items of one BatchWriteItem, and how often (with a doubling
# pause from BATCH_BACKOFF_SECONDS) unprocessed items of a batch are sent again.
MAX_BATCH_ITEMS = 25
BATCH_ATTEMPTS = 5
BATCH_BACKOFF_SECONDS = 0.05
# Run attributes that are JSON text in DynamoDB and data in the API.
_JSON_ATTRIBUTES = ("trigger_data", "trigger_headers", "step_order")


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item with S and N attributes as Python values (N as int)."""
    out: dict[str, Any] = {}
    for key, typed in item.items():
        (kind, value), = typed.items()
        if kind == "N":
            out[key] = int(value)
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
class SeqGuard:
    """Who writes a run's events: the writer whose view of ``last_seq`` is current.

    A batch of events is written without a condition per event (BatchWriteItem has
    none), so the run's record guards it: the writer moves the record's ``last_seq``
    from ``previous`` to ``last`` on the condition that it still is ``previous``.
    A second writer of the same run, whose view is stale, is refused there, before
    any of its events is written.

    Attributes:
        previous: The ``last_seq`` this writer last set (0: none yet).
        last: The highest seq of the batch about to be written.
    """

    previous: int
    last: int


def _bounded(step: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A step result fit to store, and its JSON: past the limit, its output is summarised."""
    text = _json.dumps(step)
    if len(text) > STEP_OUTPUT_LIMIT:
        step = {**step, "output_data": _json.summary(step.get("output_data"),
                                                     STEP_OUTPUT_LIMIT // 2)}
        step.pop("executions", None)
        text = _json.dumps(step)
    return step, text


class _Update:
    """An UpdateItem's ``SET`` clauses, names and values, gathered one by one."""

    def __init__(self) -> None:
        self.assignments: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.condition = ""

    def set(self, path: str, placeholder: str, value: Any,
            names: dict[str, str] | None = None) -> None:
        self.assignments.append(f"{path} = {placeholder}")
        self.values[placeholder] = value
        self.names.update(names or {})

    def parameters(self) -> dict[str, Any]:
        parameters = {"UpdateExpression": "SET " + ", ".join(self.assignments),
                      "ExpressionAttributeValues": self.values}
        if self.names:
            parameters["ExpressionAttributeNames"] = self.names
        if self.condition:
            parameters["ConditionExpression"] = self.condition
        return parameters


def _storage_error(action: str, exc: ClientError) -> StorageError:
    code = exc.response.get("Error", {}).get("Code", "Unknown")
    return StorageError(f"DynamoDB refused {action}: {code}")


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
            elif isinstance(value, int):
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

    def claim_run(self, run_id: str, started_at: str) -> dict[str, Any] | None:
        """Move a queued run to ``running`` and return it; None if it is not queued.

        One conditional write does it all: no read before (the condition decides who
        takes the run) and none after (the write returns the item).

        Raises:
            NotFoundError: There is no such run (a message naming a run that never was).
        """
        try:
            answer = self.client.update_item(
                TableName=self.runs_table,
                Key={"run_id": _s(run_id)},
                UpdateExpression="SET #status = :running, started_at = :at",
                ConditionExpression="#status = :queued",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":running": _s("running"), ":queued": _s("queued"), ":at": _s(started_at)
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                if "Item" not in exc.response:
                    raise NotFoundError("run", run_id) from exc
                return None
            raise _storage_error("the run claim", exc) from exc
        return _run_record(answer["Attributes"])

    def put_steps(
        self,
        run_id: str,
        steps: list[dict[str, Any]],
        steps_completed: int,
        finish: RunEnd | None = None,
        guard: SeqGuard | None = None,
    ) -> list[dict[str, Any]]:
        """Record step results (one per step id), the run's end, and a batch's guard.

        One write for all of them. A run's steps share one item (DynamoDB's limit:
        400 KB), so an output larger than ``STEP_OUTPUT_LIMIT`` bytes of JSON is stored
        as a marked, bounded summary.

        Args:
            run_id: The run.
            steps: Step results, at most one per step id.
            steps_completed: The run's count of decided steps (stored with results).
            finish: The run's end, if it ended.
            guard: Claims the next batch of events for this writer (see ``SeqGuard``).

        Returns:
            The results as stored (bounded).

        Raises:
            StorageError: DynamoDB refused, or ``guard`` found another writer's seq.
        """
        stored = [_bounded(step) for step in steps]
        update = _Update()
        for n, (step, text) in enumerate(stored):
            update.set(f"steps.#s{n}", f":s{n}", _s(text), {f"#s{n}": step["step_id"]})
        if steps:
            update.set("steps_completed", ":done", _n(steps_completed))
        if finish is not None:
            update.set("#status", ":status", _s(finish.status), {"#status": "status"})
            update.set("completed_at", ":at", _s(finish.completed_at))
            if finish.error:
                update.set("error_message", ":error", _s(finish.error))
        if guard is not None:
            update.set("last_seq", ":last", _n(guard.last))
            update.condition = ("last_seq = :previous" if guard.previous
                                else "attribute_not_exists(last_seq)")
            if guard.previous:
                update.values[":previous"] = _n(guard.previous)
        if update.assignments:
            try:
                self.client.update_item(TableName=self.runs_table,
                                        Key={"run_id": _s(run_id)}, **update.parameters())
            except ClientError as exc:
                raise _storage_error(f"the progress of run {run_id}", exc) from exc
        return [step for step, _text in stored]

    def finish_run(self, run_id: str, status: str, completed_at: str, error: str | None) -> None:
        """Record a run's terminal status."""
        self.put_steps(run_id, [], 0, RunEnd(status, completed_at, error))

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
        """Append one event; a second write of the same ``seq`` is refused, not doubled."""
        try:
            self.client.put_item(
                TableName=self.events_table,
                Item={"run_id": _s(run_id), "seq": _n(seq), "type": _s(event_type),
                      "data": _s(data)},
                ConditionExpression="attribute_not_exists(seq)",
            )
        except ClientError as exc:
            raise _storage_error(f"event {seq} of run {run_id}", exc) from exc

    def put_events(self, run_id: str, events: list[tuple[int, str, str]]) -> None:
        """Append ``(seq, type, data)`` events: one conditional put, or batches of 25.

        One event is written as ``put_event`` writes it. Several go in BatchWriteItem
        requests, which take no condition: the caller guards their seqs first (see
        ``SeqGuard``). Items DynamoDB leaves unprocessed are sent again, with backoff.
        """
        if len(events) == 1:
            self.put_event(run_id, *events[0])
            return
        for start in range(0, len(events), MAX_BATCH_ITEMS):
            chunk = events[start : start + MAX_BATCH_ITEMS]
            requests = [{"PutRequest": {"Item": {"run_id": _s(run_id), "seq": _n(seq),
                                                 "type": _s(event_type), "data": _s(data)}}}
                        for seq, event_type, data in chunk]
            self._batch_write(requests, f"events {chunk[0][0]}-{chunk[-1][0]} of run {run_id}")

    def _batch_write(self, requests: list[dict[str, Any]], what: str) -> None:
        """BatchWriteItem to the events table until DynamoDB has processed every item."""
        pending = {self.events_table: requests}
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

    def events_after(self, run_id: str, after: int, limit: int = 500) -> list[dict[str, Any]]:
        """Up to ``limit`` events of ``run_id`` with ``seq > after``, in order."""
        result = self.client.query(
            TableName=self.events_table,
            KeyConditionExpression="run_id = :run AND seq > :after",
            ExpressionAttributeValues={":run": _s(run_id), ":after": _n(after)},
            Limit=limit,
        )
        return [_json.loads(item["data"]["S"]) for item in result["Items"]]
