"""Faults for the durability tests, and the invariants every run must keep through them.

- ``Crash``: the executor's process dies at a chosen point (a ``BaseException``, so no
  ``except Exception`` of the engine or of powertools' batch processor stops it).
- ``FaultInjector``: makes one boto3 DynamoDB client crash, or be throttled, at a named
  write point of a run (``write_point``), before the write or just after it.
- ``RunQueue``: a private SQS queue (and dead-letter queue, with the template's
  redrive policy) that a test delivers from by hand, as Lambda's event source would.
- ``executor_for``: the executor functions' module loaded once more and bound to an
  engine of the test's own: another Lambda container, with its own lease length and
  clients to break, that leaves the stack's executor alone.
- ``run_problems`` / ``check_run``: what must hold of a run whatever happened to it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stepstream import Engine, Settings
from stepstream.events import TERMINAL_TYPES
from stepstream.store import FINISHED, Store
from stepstream_local.runtime import LocalContext
from tests.conftest import ROOT
from tests.support.servers import LocalServer

EXECUTOR_MODULE = ROOT / "functions" / "executor" / "executor_handler.py"
# Step types whose execution reaches the outside world (the ones an Idempotency-Key guards).
EFFECT_TYPES = frozenset({"http", "llm", "notify"})
# The keeper renews leases from its own thread; a fault there is no crash of the run.
KEEPER_THREAD = "lease-keeper"


class Crash(BaseException):  # noqa: N818 - it is no error: the process is gone
    """The executor's process dies here: nothing after this point runs, nothing is undone."""


def throttled(operation: str) -> ClientError:
    """The error DynamoDB answers a request it throttles (after botocore's own retries)."""
    error = {"Code": "ProvisionedThroughputExceededException",
             "Message": "The level of configured provisioned throughput for the table was "
                        "exceeded (injected by the test)"}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


def write_point(operation: str, params: dict[str, Any]) -> str:
    """Which of the engine's writes a DynamoDB request is.

    ``claim`` (``Store.claim_run``, any mode), ``progress`` (a batch's record write),
    ``release`` (the record write of a run handed on), ``finish`` (the record write
    that ends a run), ``renew`` (the keeper's lease renewal), ``events`` (a batch of
    events, in a BatchWriteItem or a transaction), ``terminal`` (the terminal event's
    put), ``event`` (another single event), ``run`` (a new run record), ``update``
    (another update); reads are named by their operation.
    """
    if operation == "UpdateItem":
        values = params.get("ExpressionAttributeValues", {})
        for placeholder, point in ((":me", "claim"), (":end", "finish"), (":status", "finish"),
                                   (":reason", "release"), (":done", "progress")):
            if placeholder in values:
                return point
        return "renew" if set(values) == {":until", ":owner"} else "update"
    if operation == "BatchWriteItem":
        return "events"
    if operation == "TransactWriteItems":
        # Events written in a transaction (with a check of the run's lease) are events.
        puts = [item["Put"]["Item"] for item in params.get("TransactItems", []) if "Put" in item]
        return "events" if puts and all("seq" in item for item in puts) else "transaction"
    if operation == "PutItem":
        item = params.get("Item", {})
        if "seq" not in item:
            return "run"
        return "terminal" if item.get("type", {}).get("S") in TERMINAL_TYPES else "event"
    return operation


def _run_of(params: dict[str, Any]) -> str | None:
    key = params.get("Key") or params.get("Item")
    if key is None and "RequestItems" in params:
        (requests, *_rest) = params["RequestItems"].values()
        key = requests[0].get("PutRequest", {}).get("Item")
    if key is None and params.get("TransactItems"):
        (action,) = params["TransactItems"][0].values()
        key = action.get("Key") or action.get("Item")
    return (key or {}).get("run_id", {}).get("S")


@dataclass
class Fault:
    """One planned fault: at the ``skip + 1``-th matching write, ``times`` times.

    Attributes:
        point: The write point (``write_point``).
        action: ``"crash"`` (``Crash``) or ``"throttle"`` (``throttled``).
        after: The write is done first (the fault hits between it and what follows).
        run_id: Only writes of this run; None: any run.
        skip: Matching writes to let through first.
        when: Only while this returns True (e.g. once an effect has happened).
        times: How often it fires.
        keeper: Fire on the lease keeper's thread only (its renewals), not elsewhere.
        fired: How often it fired.
    """

    point: str
    action: str
    after: bool = False
    run_id: str | None = None
    skip: int = 0
    when: Callable[[], bool] | None = None
    times: int = 1
    keeper: bool = False
    fired: int = 0

    def matches(self, point: str, run_id: str | None, keeper: bool) -> bool:
        """Whether this write is the one to strike (a skipped match counts down ``skip``)."""
        if self.fired >= self.times or point != self.point or keeper != self.keeper:
            return False
        if self.run_id is not None and run_id != self.run_id:
            return False
        if self.when is not None and not self.when():
            return False
        if self.skip:
            self.skip -= 1
            return False
        return True

    def strike(self, operation: str) -> None:
        """Raise what the fault stands for."""
        if self.action == "throttle":
            raise throttled(operation)
        raise Crash(f"{operation} ({self.point}, {'after' if self.after else 'before'})")


class FaultInjector:
    """Plans faults into one boto3 DynamoDB client, through botocore's event hooks.

    A ``before`` fault raises before the request is built (nothing is written); an
    ``after`` fault raises once the response of a successful write is in. A fault fires
    on the lease keeper's thread only if it says so (``Fault.keeper``): a crash there
    would kill a thread, not the process. Every request the client makes is kept in
    ``writes`` as ``(point, run_id)``, and in ``answers`` with whether it succeeded.

    Args:
        client: A DynamoDB client (an engine's ``store.client``).
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        # Planned faults by the run they concern (None: any run).
        self.faults: dict[str | None, list[Fault]] = {}
        self.writes: list[tuple[str, str | None]] = []
        self.answers: list[tuple[str, str | None, bool]] = []
        self.lock = threading.Lock()
        self.tag = uuid.uuid4().hex
        events = client.meta.events
        events.register("before-parameter-build.dynamodb", self._before, f"{self.tag}-b")
        events.register("after-call.dynamodb", self._after, f"{self.tag}-a")

    def __enter__(self) -> FaultInjector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Take the hooks out of the client."""
        events = self.client.meta.events
        events.unregister("before-parameter-build.dynamodb", unique_id=f"{self.tag}-b")
        events.unregister("after-call.dynamodb", unique_id=f"{self.tag}-a")

    def add(self, fault: Fault) -> Fault:
        """Plan ``fault``; returns it (its ``fired`` tells whether it struck)."""
        with self.lock:
            self.faults.setdefault(fault.run_id, []).append(fault)
        return fault

    def crash(self, point: str, **options: Any) -> Fault:
        """Plan a crash at ``point`` (``Fault``'s other fields as keywords)."""
        return self.add(Fault(point, "crash", **options))

    def throttle(self, point: str, **options: Any) -> Fault:
        """Plan one throttled write at ``point``."""
        return self.add(Fault(point, "throttle", **options))

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any],
                **_kwargs: Any) -> None:
        point, run_id = write_point(model.name, params), _run_of(params)
        keeper = threading.current_thread().name == KEEPER_THREAD
        context["fault_write"] = (point, run_id)
        with self.lock:
            self.writes.append((point, run_id))
            planned = [*self.faults.get(run_id, ()), *self.faults.get(None, ())]
            fault = next((f for f in planned if f.matches(point, run_id, keeper)), None)
            if fault is None:
                return
            fault.fired += 1
        if fault.after:
            context["injected_fault"] = fault
            return
        fault.strike(model.name)

    def _after(self, http_response: Any, model: Any, context: dict[str, Any],
               **_kwargs: Any) -> None:
        if "fault_write" in context:
            with self.lock:
                self.answers.append((*context["fault_write"], http_response.status_code < 300))
        fault = context.pop("injected_fault", None)
        if fault is None:
            return
        if http_response.status_code >= 300:
            with self.lock:
                fault.fired -= 1  # the write did not happen: the fault waits for one that does
            return
        fault.strike(model.name)


# -- queues, events and executors ------------------------------------------------------


def sqs_record(body: str, *, receipt_handle: str | None = None, message_id: str | None = None,
               receive_count: int = 1, queue_arn: str = "") -> dict[str, Any]:
    """One SQS record of a Lambda event, as the event source builds it."""
    now = str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or f"fault-test-{uuid.uuid4()}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": now,
                       "SenderId": "AIDAFAULTS", "ApproximateFirstReceiveTimestamp": now},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn or "arn:aws:sqs:us-east-1:123456789012:RunQueue",
        "awsRegion": "us-east-1",
    }


def run_message(run_id: str, reason: str = "start") -> str:
    """The body ``Engine.enqueue_run`` sends for ``run_id``."""
    return json.dumps({"run_id": run_id, "reason": reason})


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    """A Lambda SQS event of ``records`` (``sqs_record``)."""
    return {"Records": list(records)}


def lambda_context(seconds: float = 300.0, name: str = "ExecutorFunction") -> LocalContext:
    """A Lambda context whose invocation has ``seconds`` left."""
    return LocalContext(function_name=name, memory_limit_in_mb=1024, timeout_seconds=300,
                        aws_request_id=str(uuid.uuid4()), deadline=time.monotonic() + seconds)


def executor_for(engine: Engine) -> ModuleType:
    """``executor_handler`` loaded as a module of its own, its ``engine()`` being ``engine``.

    Another Lambda container of the same code: its own batch processors, its own
    engine (lease length, clients, queue), none of the stack's state.
    """
    name = f"executor_handler_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, EXECUTOR_MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.engine = lambda: engine  # type: ignore[attr-defined]
    return module


def short_lease_engine(queue_url: str | None = None, lease_seconds: float = 1.0) -> Engine:
    """An engine on the stack's tables with a short lease, no Redis, its own queue."""
    settings = replace(Settings.from_env(), lease_seconds=lease_seconds, redis_url="")
    if queue_url is not None:
        settings = replace(settings, run_queue_url=queue_url)
    return Engine(settings)


@dataclass
class Delivery:
    """What came of invoking a function with one batch."""

    messages: list[dict[str, Any]]
    failed: set[str] = field(default_factory=set)
    crashed: bool = False
    raised: Exception | None = None


class RunQueue:
    """A private run queue and its dead-letter queue, with the template's redrive policy.

    Messages are received and handed to a function only when the test says so
    (``deliver``); what the function does not fail is deleted, as Lambda's event source
    does. ``expire`` makes received messages visible again: the visibility timeout,
    fast-forwarded.
    """

    def __init__(self, name: str) -> None:
        self.sqs = boto3.client("sqs")
        stack_queue = os.environ["RUN_QUEUE_URL"]
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=stack_queue, AttributeNames=["RedrivePolicy", "VisibilityTimeout"]
        )["Attributes"]
        self.max_receive_count = int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])
        suffix = uuid.uuid4().hex[:8]
        self.dlq_url = self.sqs.create_queue(QueueName=f"{name}-dlq-{suffix}")["QueueUrl"]
        self.dlq_arn = self._arn(self.dlq_url)
        policy = {"deadLetterTargetArn": self.dlq_arn,
                  "maxReceiveCount": str(self.max_receive_count)}
        self.url = self.sqs.create_queue(
            QueueName=f"{name}-{suffix}",
            Attributes={"VisibilityTimeout": attributes["VisibilityTimeout"],
                        "RedrivePolicy": json.dumps(policy)},
        )["QueueUrl"]
        self.arn = self._arn(self.url)

    def _arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]

    def send(self, body: str, delay: int = 0) -> None:
        """Put a message on the queue."""
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body, DelaySeconds=delay)

    def receive(self, url: str | None = None, most: int = 10,
                wait: float = 0) -> list[dict[str, Any]]:
        """Up to ``most`` visible messages of the queue (or ``url``), now received."""
        return self.sqs.receive_message(
            QueueUrl=url or self.url, MaxNumberOfMessages=most, WaitTimeSeconds=int(wait),
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])

    def records(self, messages: list[dict[str, Any]], arn: str | None = None
                ) -> list[dict[str, Any]]:
        """The SQS records of received ``messages``."""
        return [
            {**sqs_record(m["Body"], receipt_handle=m["ReceiptHandle"],
                          message_id=m["MessageId"], queue_arn=arn or self.arn),
             "attributes": m.get("Attributes", {})}
            for m in messages
        ]

    def deliver(self, handler: Callable[[dict[str, Any], Any], Any],
                messages: list[dict[str, Any]], seconds: float = 300.0,
                url: str | None = None) -> Delivery:
        """Invoke ``handler`` with ``messages``; delete what it did not fail.

        A ``Crash`` leaves the whole batch undeleted, as a dead process does; so does
        an error raised out of the handler (the invocation failed).
        """
        delivery = Delivery(messages)
        ids = {m["MessageId"] for m in messages}
        try:
            result = handler(sqs_event(*self.records(messages)), lambda_context(seconds))
        except Crash:
            delivery.crashed, delivery.failed = True, ids
            return delivery
        except Exception as exc:  # noqa: BLE001 - Lambda fails the whole batch; so do we
            delivery.raised, delivery.failed = exc, ids
            return delivery
        delivery.failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
        done = [m for m in messages if m["MessageId"] not in delivery.failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=url or self.url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                         for n, m in enumerate(done)])
        return delivery

    def expire(self, messages: Iterable[dict[str, Any]], url: str | None = None) -> None:
        """Make ``messages`` visible again now (their visibility timeout passed)."""
        for message in messages:
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=url or self.url, ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0)
            except ClientError:
                pass  # deleted meanwhile, or moved to the dead-letter queue

    def depth(self, url: str | None = None) -> int:
        """Messages in the queue (or ``url``): visible, in flight and delayed."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url or self.url,
                                                   AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)

    def delete(self) -> None:
        """Remove both queues."""
        for url in (self.url, self.dlq_url):
            self.sqs.delete_queue(QueueUrl=url)


# -- the invariants ----------------------------------------------------------------------


@dataclass
class RunReport:
    """A run as the checker found it.

    Attributes:
        record: The run's record.
        events: Its events, in seq order.
        requests: Requests the servers got for it, by ``Idempotency-Key``.
        reexecuted: Keys whose requests outnumber the attempts the run recorded for
            them, with how many more (executions repeated after a crash).
        unrecorded: Keys the servers saw that the run recorded no execution for.
        problems: Every invariant the run breaks.
    """

    record: dict[str, Any]
    events: list[dict[str, Any]]
    requests: Counter[str]
    reexecuted: dict[str, int]
    unrecorded: list[str]
    problems: list[str]

    @property
    def types(self) -> list[str]:
        """The events' types, in order."""
        return [event["type"] for event in self.events]

    def of(self, event_type: str, step_id: str | None = None) -> list[dict[str, Any]]:
        """The events of ``event_type`` (about ``step_id``, if given)."""
        return [e for e in self.events if e["type"] == event_type
                and (step_id is None or e.get("step_id") == step_id)]

    @property
    def resumed(self) -> list[str]:
        """The reasons of the run's ``run_resumed`` events."""
        return [event["reason"] for event in self.of("run_resumed")]


def stored_events(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Every item of the run in the events table, as stored (key, type and JSON data)."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {"TableName": store.events_table,
                             "KeyConditionExpression": "run_id = :run",
                             "ExpressionAttributeValues": {":run": {"S": run_id}}}
    while True:
        page = store.client.query(**query)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _recorded_attempts(run_id: str, record: dict[str, Any]) -> dict[str, int]:
    """Attempts the run recorded per execution of an effect step, by Idempotency-Key."""
    attempts: dict[str, int] = {}
    for step_id, stored in (record.get("steps") or {}).items():
        if stored.get("node_type") not in EFFECT_TYPES:
            continue
        for execution in stored.get("executions") or [stored]:
            iteration = int(execution.get("iteration") or 0)
            if iteration:
                attempts[f"{run_id}/{step_id}/{iteration}"] = int(execution.get("attempts") or 1)
    return attempts


def _event_problems(run_id: str, record: dict[str, Any], items: list[dict[str, Any]],
                    events: list[dict[str, Any]]) -> list[str]:
    problems = []
    seqs = [int(item["seq"]["N"]) for item in items]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"seqs not dense from 1: {seqs}")
    for item, event in zip(items, events, strict=True):
        if (event.get("seq"), event.get("type"), event.get("run_id")) != (
                int(item["seq"]["N"]), item["type"]["S"], run_id):
            problems.append(f"item {item['seq']['N']} does not match its data: {event}")
    # A terminal event ends the log, or (a redrive) is followed by run_resumed/redrive.
    terminal = [n for n, event in enumerate(events) if event["type"] in TERMINAL_TYPES]
    redriven = all(events[n + 1]["type"] == "run_resumed"
                   and events[n + 1].get("reason") == "redrive" for n in terminal[:-1])
    if not terminal or terminal[-1] != len(events) - 1 or not redriven:
        problems.append(f"not one terminal event, last: {[e['type'] for e in events]}")
    elif events[-1].get("status") != record.get("status"):
        problems.append(f"terminal event {events[-1]['type']} but the run is "
                        f"{record.get('status')}")
    if int(record.get("last_seq", 0)) != len(events):
        problems.append(f"record last_seq {record.get('last_seq')} but {len(events)} events")
    starts = sum(event["type"] == "run_started" for event in events)
    if starts > 1 or (events and events[0]["type"] not in ("run_started", *TERMINAL_TYPES)):
        problems.append(f"run_started {starts} times, first event {events[0]['type']}")
    return problems


def _history_problems(events: list[dict[str, Any]]) -> list[str]:
    """Where the log does not tell one story, attempt by attempt.

    Each attempt opens with ``run_started`` or ``run_resumed``; in it, a step's
    execution is decided (``step_completed``/``step_failed``) once at most, after a
    ``step_started`` of that execution in the same attempt. A log pieced together from
    two executors' writes breaks this even when its seqs are dense.
    """
    problems, started, decided = [], set(), set()
    for event in events:
        kind, execution = event["type"], (event.get("step_id"), event.get("iteration"))
        if kind in ("run_started", "run_resumed"):
            started, decided = set(), set()
        elif kind == "step_started":
            started.add(execution)
        elif kind in ("step_completed", "step_failed"):
            if execution not in started or execution in decided:
                problems.append(f"{kind} {execution} at seq {event['seq']} has no start of "
                                f"its own in its attempt")
            decided.add(execution)
    return problems


def _decided_twice(events: list[dict[str, Any]]) -> list[str]:
    """Step executions decided by more than one event (what a double run would leave)."""
    decided = Counter((e["step_id"], e.get("iteration")) for e in events
                      if e["type"] in ("step_completed", "step_failed"))
    return [f"{step_id}#{iteration}" for (step_id, iteration), n in decided.items() if n > 1]


def run_problems(store: Store, run_id: str, *, status: str | None = None,
                 servers: Iterable[LocalServer] = (), reexecution: bool = False) -> RunReport:
    """Check a run against the invariants every run keeps, whatever happened to it.

    - It ended (``completed``/``failed``/``cancelled``, or ``status``): no run is lost
      or stuck ``running``, and it holds no lease.
    - Its events have seqs 1..N, each stored item agrees with its JSON, exactly one
      terminal event is the last and agrees with the record (an earlier one only
      where a redrive went on after it); one ``run_started``; attempt by attempt, each
      step decision follows that step's start (``_history_problems``).
    - No step execution was decided twice, and no request reached ``servers`` more
      often than the run recorded attempts for its ``Idempotency-Key``; unless
      ``reexecution``: the run was interrupted in the documented window (after a
      batch's events, before its record write), so the steps since its last record
      are executed again (an effect under the same key).

    Returns:
        The report; its ``problems`` are empty when the run keeps every invariant.
    """
    record = store.get_run(run_id)
    items = stored_events(store, run_id)
    events = [json.loads(item["data"]["S"]) for item in items]
    problems = []
    if record.get("status") not in FINISHED or (status and record["status"] != status):
        problems.append(f"run is {record.get('status')}, expected {status or 'finished'}")
    if float(record.get("lease_until") or 0) > time.time():
        problems.append("a finished run still holds a lease")
    problems += _event_problems(run_id, record, items, events)
    problems += _history_problems(events)
    requests = Counter(
        request.headers.get("idempotency-key", "")
        for server in servers for request in server.requests
        if request.headers.get("idempotency-key", "").startswith(f"{run_id}/")
    )
    attempts = _recorded_attempts(run_id, record)
    reexecuted = {key: n - attempts[key] for key, n in requests.items()
                  if key in attempts and n > attempts[key]}
    unrecorded = sorted(key for key in requests if key not in attempts)
    if not reexecution:
        twice = _decided_twice(events)
        if twice or reexecuted or unrecorded:
            problems.append(f"steps ran twice without a crash: decided twice {twice}, "
                            f"requests over attempts {reexecuted}, unrecorded {unrecorded}")
    return RunReport(record, events, requests, reexecuted, unrecorded, problems)


def check_run(store: Store, run_id: str, **expected: Any) -> RunReport:
    """``run_problems``, asserted: fails the test with every problem found."""
    report = run_problems(store, run_id, **expected)
    assert not report.problems, f"run {run_id}:\n  " + "\n  ".join(report.problems) + (
        f"\n  error: {report.record.get('error_message')}"
        "\n  events: " + ", ".join(f"{e['seq']}:{e['type']}" for e in report.events))
    return report


def wait_for_end(store: Store, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The run's record once it has ended (or as it is after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        record = store.get_run(run_id)
        if record["status"] in FINISHED or time.monotonic() > deadline:
            return record
        time.sleep(0.1)


@dataclass
class OwnExecutor:
    """An executor of the test's own: an engine, its private run queue, its handler module.

    Its engine has a short lease (a run it crashed on is free again a second later) and
    sends the messages it queues (continuations, look-agains) to ``queue``, which only
    the test delivers from; ``faults`` breaks its DynamoDB client, no other. The
    dead-letter function (``dead_letters``) runs on an engine of its own, unbroken.
    """

    engine: Engine
    queue: RunQueue
    module: ModuleType
    faults: FaultInjector
    dead_letters: ModuleType

    @classmethod
    def create(cls, name: str, lease_seconds: float = 1.0) -> OwnExecutor:
        """A new executor with fresh queues."""
        queue = RunQueue(name)
        engine = short_lease_engine(queue.url, lease_seconds)
        return cls(engine, queue, executor_for(engine), FaultInjector(engine.store.client),
                   executor_for(short_lease_engine(queue.url, lease_seconds)))

    @property
    def store(self) -> Store:
        """The engine's store (the stack's tables)."""
        return self.engine.store

    def queue_run(self, workflow_id: str, data: Any = None) -> str:
        """Create a queued run and send its message to this executor's queue."""
        run = self.engine.create_run(workflow_id, data or {}, None, "queued")
        self.queue.send(run_message(run["run_id"]))
        return str(run["run_id"])

    def deliver(self, most: int = 10, seconds: float = 300.0, wait: float = 0) -> Delivery:
        """Receive what is visible on the queue and invoke the executor with it."""
        messages = self.queue.receive(most=most, wait=wait)
        if not messages:
            return Delivery([])
        return self.queue.deliver(self.module.handler, messages, seconds)

    def close(self) -> None:
        """Remove the hooks and the queues."""
        self.faults.remove()
        self.queue.delete()
