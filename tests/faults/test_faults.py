"""Runs under at-least-once delivery, crashes, throttling, slow steps and short Lambdas.

Each test breaks one thing on the local stack and checks, beyond what it is about,
the invariants every run keeps (``tests.support.faults.check_run``): it ends, its
events are dense and unique with one terminal event last, and no step runs twice
except in the one documented window, under the same ``Idempotency-Key``.

Most tests use an executor of their own (``own``: the executor's module loaded again,
on an engine with a 1 s lease and a private queue) so that its DynamoDB client can be
broken and its messages delivered by hand. ``stack_executor`` is another container of
the stack's executor (its settings and queue); the stack's own poller finishes what
that one queues.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from types import ModuleType
from typing import Any

import pytest

from stepstream import Engine
from stepstream.store import FINISHED, Store
from stepstream_local.stack import LocalStack
from tests.faults.conftest import Register
from tests.support.faults import (
    Fault,
    FaultInjector,
    OwnExecutor,
    check_run,
    executor_for,
    lambda_context,
    run_message,
    short_lease_engine,
    sqs_event,
    sqs_record,
    wait_for_end,
)
from tests.support.servers import MockHttpServer, RecordedRequest, Reply, json_reply

# trigger → one http effect → a notify that only logs (no effect: no write before it).
CALL_STEPS = """
- id: start
  type: trigger
- id: call
  type: http
  method: POST
  url: "{url}"
  body: {{order: "{{trigger.body.order}}"}}{options}
- id: tell
  type: notify
  channel: log
  message: "called: {{call.status_code}}"
"""


def call_workflow(register: Register, effects: MockHttpServer, path: str = "/effect",
                  options: str = "") -> str:
    return register(CALL_STEPS.format(url=effects.url(path), options=options))


def drain(own: OwnExecutor, run_id: str, timeout: float = 10.0) -> None:
    """Deliver the executor's queue as its messages become visible, as Lambda would.

    Until the run has ended and its queue is empty (or ``timeout`` passes): messages
    come back when their visibility timeout, as the engine set it, says so.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if own.store.get_run(run_id)["status"] in FINISHED and own.queue.depth() == 0:
            return
        own.deliver(wait=1)


def recover(own: OwnExecutor, messages: list[dict[str, Any]]) -> None:
    """After a crash: wait out the dead executor's lease, then its messages' visibility."""
    time.sleep(own.engine.settings.lease_seconds + 0.2)
    own.queue.expire(messages)


def invoke(handler: Any, *records: dict[str, Any]) -> Any:
    """Call an executor handler with ``records`` as one invocation."""
    return handler(sqs_event(*records), lambda_context())


# -- 1. duplicate delivery ---------------------------------------------------------------


def test_message_delivered_again_after_its_run_ended_changes_nothing(
    own: OwnExecutor, register: Register, effects: MockHttpServer, store: Store
) -> None:
    """Given a run executed from its message, a second delivery writes and calls nothing."""
    run_id = own.queue_run(call_workflow(register, effects), {"order": 1})
    records = own.queue.records(own.queue.receive())
    first = invoke(own.module.handler, *records)
    events = store.events_after(run_id, 0)

    # The same message again: its delete was lost, or SQS delivered it twice.
    second = invoke(own.module.handler, *records)

    assert first == second == {"batchItemFailures": []}
    assert store.events_after(run_id, 0) == events
    report = check_run(store, run_id, status="completed", servers=[effects])
    assert report.requests == {f"{run_id}/call/1": 1}


def test_four_deliveries_of_one_message_at_once_execute_the_run_once(
    own: OwnExecutor, register: Register, effects: MockHttpServer, store: Store
) -> None:
    """Given four executors handed the same message together, one runs it, three look later."""
    # Four Lambda containers: each its own module (batch processor), engine and clients.
    engines = [own.engine] + [short_lease_engine(own.queue.url) for _ in range(3)]
    logs = [own.faults] + [FaultInjector(engine.store.client) for engine in engines[1:]]
    handlers = [own.module.handler] + [executor_for(engine).handler for engine in engines[1:]]
    # The call is answered once all four have tried to claim the run.
    claimed = threading.Event()
    effects.respond_with("POST", "/held", lambda request: (
        claimed.wait(10), json_reply(200, {"done": True}))[1])
    run_id = own.queue_run(call_workflow(register, effects, "/held"), {"order": 4})
    (message,) = own.queue.receive()
    record = own.queue.records([message])[0]
    start, results = threading.Barrier(len(handlers)), []

    def deliver(handler: Any) -> None:
        start.wait()
        results.append(invoke(handler, record))

    threads = [threading.Thread(target=deliver, args=(h,)) for h in handlers]
    for thread in threads:
        thread.start()
    while sum(log.writes.count(("claim", run_id)) for log in logs) < len(handlers):
        time.sleep(0.01)
    while sum(a[:2] == ("claim", run_id) for log in logs for a in log.answers) < len(handlers):
        time.sleep(0.01)
    claimed.set()
    for thread in threads:
        thread.join(timeout=30)
    for log in logs[1:]:
        log.remove()

    assert results == [{"batchItemFailures": []}] * 4
    report = check_run(store, run_id, status="completed", servers=[effects])
    assert report.requests == {f"{run_id}/call/1": 1}
    # Each executor that found the run busy queued a look-again for when the lease
    # ends, beside the original message (never deleted here). DynamoDB lets one claim
    # win (three refusals); moto's server checks and writes without an item lock, so
    # under load several may win, and all but the last lose the run at their first
    # record write, before the call. So: one look-again per refusal.
    refused = sum(a == ("claim", run_id, False) for log in logs for a in log.answers)
    assert own.queue.depth() == 1 + refused
    own.queue.sqs.delete_message(QueueUrl=own.queue.url, ReceiptHandle=message["ReceiptHandle"])
    drain(own, run_id)
    assert own.queue.depth() == 0
    assert check_run(store, run_id, status="completed", servers=[effects]).events == report.events


def test_delivery_while_another_executor_holds_the_run_looks_again_after_its_lease(
    own: OwnExecutor, register: Register, effects: MockHttpServer, store: Store
) -> None:
    """A duplicate that arrives mid-step passes the run over and queues one look-again."""
    effects.route("POST", "/held", json={"done": True}, delay=1.0)
    run_id = own.queue_run(call_workflow(register, effects, "/held"), {"order": 2})
    (message,) = own.queue.receive()
    first = threading.Thread(target=own.queue.deliver, args=(own.module.handler, [message]))
    first.start()
    while not effects.requests:
        time.sleep(0.01)

    duplicate = invoke(own.module.handler, sqs_record(message["Body"]))
    first.join(timeout=30)

    assert duplicate == {"batchItemFailures": []}
    assert own.queue.depth() == 1  # the look-again, delayed past the lease
    drain(own, run_id)
    report = check_run(store, run_id, status="completed", servers=[effects])
    assert report.requests == {f"{run_id}/call/1": 1}
    assert report.resumed == []


def test_concurrent_invocations_of_the_stacks_executor_report_their_own_failures(
    stack: LocalStack, register: Register, effects: MockHttpServer, stack_engine: Engine
) -> None:
    """An invocation of the stack's executor reports its failures whatever runs beside it.

    The stack's poller invokes its one loaded executor from four threads; Lambda never
    runs two invocations in one container. Given an invocation whose first record
    failed and a second invocation starting while it is busy, the first must still
    report its failure: otherwise the poller deletes a message that failed.
    """
    effects.route("POST", "/held", json={"done": True}, delay=0.5)
    workflow_id = call_workflow(register, effects, "/held")
    first_run, second_run = (stack_engine.create_run(workflow_id, {"order": n}, None,
                                                     "queued")["run_id"] for n in (1, 2))
    poison = sqs_record("this message is not a run")
    executor, results = stack.queue_function("ExecutorFunction"), {}

    def first() -> None:
        results["first"] = executor.invoke(sqs_event(poison, sqs_record(run_message(first_run))))

    thread = threading.Thread(target=first)
    thread.start()
    while not effects.requests:
        time.sleep(0.01)
    results["second"] = executor.invoke(sqs_event(sqs_record(run_message(second_run))))
    thread.join(timeout=30)

    assert results["second"] == {"batchItemFailures": []}
    assert results["first"] == {"batchItemFailures": [{"itemIdentifier": poison["messageId"]}]}


# -- 2. crash between a step's effect and its checkpoint ---------------------------------


@pytest.mark.parametrize("point", ["events", "finish"])
def test_crash_between_effect_and_checkpoint_repeats_the_step_under_the_same_key(
    point: str, own: OwnExecutor, register: Register, effects: MockHttpServer,
    store: Store, stack_executor: ModuleType,
) -> None:
    """A crash after an http call, before its record, repeats the call under its key.

    Given an executor that dies there, another container takes the run up after the
    lease: the call is made once more, with the same Idempotency-Key, and the run
    completes with a dense log.
    """
    run_id = own.queue_run(call_workflow(register, effects), {"order": 3})
    crash = own.faults.crash(point, run_id=run_id, when=lambda: bool(effects.requests))
    first = own.deliver()
    assert first.crashed and crash.fired == 1
    assert store.get_run(run_id)["status"] == "running"

    time.sleep(own.engine.settings.lease_seconds + 0.2)
    again = invoke(stack_executor.handler, sqs_record(run_message(run_id), receive_count=2))

    assert again == {"batchItemFailures": []}
    report = check_run(store, run_id, status="completed", servers=[effects], reexecution=True)
    key = f"{run_id}/call/1"
    assert [r.headers["idempotency-key"] for r in effects.requests] == [key, key]
    assert [r.json() for r in effects.requests] == [{"order": 3}] * 2
    assert report.reexecuted == {key: 1}
    assert report.resumed == ["recovered"]


@pytest.mark.parametrize("action", ["crash", "throttle"])
def test_step_with_a_timeout_taken_up_after_its_call_is_run_again_not_timed_out(
    action: str, own: OwnExecutor, register: Register, effects: MockHttpServer, store: Store
) -> None:
    """A step with a timeout, interrupted after its call, is run again, not timed out.

    Given an http step with timeout 1 s whose call succeeded, and an executor that died
    (or met one throttled write) before recording it, the run taken up a second or two
    later runs the call again: the time the run waited for a new executor is not the
    step's. Otherwise a passing failure fails the run for good.
    """
    run_id = own.queue_run(call_workflow(register, effects, options="\n  timeout: 1"),
                           {"order": 11})
    own.faults.add(Fault("finish", action, run_id=run_id, when=lambda: bool(effects.requests)))
    first = own.deliver()
    if first.crashed:
        recover(own, first.messages)
    drain(own, run_id)

    report = check_run(store, run_id, status="completed", servers=[effects], reexecution=True)
    assert report.requests == {f"{run_id}/call/1": 2}


def test_run_taken_up_before_its_first_checkpoint_resumes_rather_than_starts_again(
    own: OwnExecutor, register: Register, effects: MockHttpServer, store: Store
) -> None:
    """A run taken up before its first record write resumes; it does not start twice.

    The executor died after writing the first events, before the first record write:
    the run taken up goes on with run_resumed, not with a second run_started.
    """
    run_id = own.queue_run(call_workflow(register, effects), {"order": 5})
    own.faults.crash("progress", run_id=run_id)
    first = own.deliver()
    assert first.crashed and [e["type"] for e in store.events_after(run_id, 0)] == [
        "run_started", "step_started", "step_completed", "step_started"]

    recover(own, first.messages)
    own.deliver()

    report = check_run(store, run_id, status="completed", servers=[effects], reexecution=True)
    assert report.resumed == ["recovered"]
    assert report.requests == {f"{run_id}/call/1": 1}


def test_executor_that_lost_its_lease_unawares_cannot_rewrite_the_new_executors_events(
    own: OwnExecutor, register: Register, effects: MockHttpServer, store: Store
) -> None:
    """An executor past its lease cannot overwrite the events of the one that took over.

    Given an executor whose lease renewals are throttled through a 2 s http call,
    and another that takes the run up once the lease is over: the first's late batch
    must not overwrite what the second wrote, and the log tells one story.
    """
    effects.route("POST", "/held", json={"done": True}, delay=2.0)
    run_id = own.queue_run(call_workflow(register, effects, "/held"), {"order": 10})
    own.faults.throttle("renew", run_id=run_id, keeper=True, times=99)
    first = threading.Thread(target=own.deliver)
    first.start()
    while not effects.requests:
        time.sleep(0.01)
    time.sleep(own.engine.settings.lease_seconds + 0.3)

    other = executor_for(short_lease_engine(own.queue.url))
    taken = invoke(other.handler, sqs_record(run_message(run_id)))
    first.join(timeout=30)

    assert taken == {"batchItemFailures": []}
    report = check_run(store, run_id, status="completed", servers=[effects], reexecution=True)
    assert report.resumed == ["recovered"]
    assert report.requests == {f"{run_id}/call/1": 2}


def test_executor_whose_first_event_a_late_executor_wrote_first_does_not_drop_the_run(
    own: OwnExecutor, register: Register, effects: MockHttpServer, store: Store
) -> None:
    """A run taken over is not dropped because the previous executor wrote its seq first.

    Given an executor whose lease ran out during a 2 s call (renewals throttled), and
    another that claims the run and is about to write its run_resumed when the first
    one's late batch lands on the same seqs: the run must still end, not stay running
    with nobody holding it and no message left to find it.
    """
    effects.route("POST", "/held", json={"done": True}, delay=2.0)
    run_id = own.queue_run(call_workflow(register, effects, "/held"), {"order": 12})
    own.faults.throttle("renew", run_id=run_id, keeper=True, times=99)
    late_batch = threading.Event()

    def late(**_kwargs: Any) -> None:
        if effects.requests:
            late_batch.set()

    own.engine.store.client.meta.events.register("after-call.dynamodb.BatchWriteItem", late)
    first = threading.Thread(target=own.deliver)
    first.start()
    while not effects.requests:
        time.sleep(0.01)
    time.sleep(own.engine.settings.lease_seconds + 0.3)

    taker = short_lease_engine(own.queue.url)
    taker.store.client.meta.events.register(  # its first event waits for the late batch
        "before-parameter-build.dynamodb.PutItem", lambda **_kwargs: late_batch.wait(10))
    taken = invoke(executor_for(taker).handler, sqs_record(run_message(run_id)))
    first.join(timeout=30)
    drain(own, run_id, timeout=own.engine.settings.lease_seconds * 3 + 2)

    assert taken == {"batchItemFailures": []}
    record = store.get_run(run_id)
    assert record["status"] in FINISHED, (
        f"run {record['status']}, lease until {record.get('lease_until')}, no message left")


# -- 3. crash between checkpoint and acknowledgement -------------------------------------


@pytest.mark.parametrize(("point", "after"), [("finish", True), ("terminal", False),
                                              ("terminal", True)])
def test_crash_after_the_run_is_recorded_repeats_no_step(
    point: str, after: bool, own: OwnExecutor, register: Register, effects: MockHttpServer,
    store: Store,
) -> None:
    """A crash after the run's end is recorded leaves nothing to run again.

    Given an executor that dies once the run's end is recorded (terminal event
    written or not), the message delivered again writes the missing terminal event
    at most, and runs nothing.
    """
    run_id = own.queue_run(call_workflow(register, effects), {"order": 6})
    own.faults.crash(point, run_id=run_id, after=after)
    first = own.deliver()
    assert first.crashed and store.get_run(run_id)["status"] == "completed"
    assert store.last_event_seq(run_id) == (8 if after and point == "terminal" else 7)

    own.queue.expire(first.messages)
    again = own.deliver()

    assert again.failed == set() and not again.crashed
    report = check_run(store, run_id, status="completed", servers=[effects])
    assert report.requests == {f"{run_id}/call/1": 1}
    assert report.types.count("run_completed") == 1 and report.resumed == []


# -- 4. a write that fails for a moment --------------------------------------------------


@pytest.mark.parametrize(("point", "after_effect", "repeats", "calls"), [
    ("claim", False, False, 1),  # nothing written yet
    ("events", False, False, 1),  # the first batch lost whole
    ("progress", False, True, 1),  # its events written, not the record: the trigger again
    ("events", True, True, 2),  # the call's result lost
    ("finish", True, True, 2),  # the call's result in the log, not in the record
    ("terminal", True, False, 1),  # the record final: only the terminal event to write
])
def test_one_throttled_write_delays_the_run_and_it_completes(
    point: str, after_effect: bool, repeats: bool, calls: int, own: OwnExecutor,
    register: Register, effects: MockHttpServer, store: Store,
) -> None:
    """One throttled write delays a run by seconds; it still completes.

    Given DynamoDB throttling one write of a run, the message fails and comes back
    within seconds, and the run completes; its http step is repeated only when the
    write lost was the record of the step's effect.
    """
    run_id = own.queue_run(call_workflow(register, effects), {"order": 7})
    when = (lambda: bool(effects.requests)) if after_effect else None
    throttle = own.faults.throttle(point, run_id=run_id, when=when)

    first = own.deliver()
    drain(own, run_id, timeout=8)

    assert throttle.fired == 1
    assert first.failed == {m["MessageId"] for m in first.messages}
    status = store.get_run(run_id)["status"]
    assert status == "completed", f"the run is {status} 8 s after one throttled {point} write"
    report = check_run(store, run_id, status="completed", servers=[effects],
                       reexecution=repeats)
    assert report.requests == {f"{run_id}/call/1": calls}


# -- 5. poison messages and the dead-letter queue ----------------------------------------


def test_poison_messages_fail_alone_and_the_good_run_in_their_batch_completes(
    stack_executor: ModuleType, stack_engine: Engine, register: Register,
    effects: MockHttpServer, store: Store,
) -> None:
    """Poison messages fail alone: the run message in their batch completes.

    A batch with a body that is no JSON and one that names no run reports exactly
    those two as failures.
    """
    run_id = stack_engine.create_run(call_workflow(register, effects), {"order": 8}, None,
                                     "queued")["run_id"]
    records = [sqs_record("{not json"), sqs_record(run_message(run_id)),
               sqs_record(json.dumps({"reason": "start"}))]

    result = invoke(stack_executor.handler, *records)

    assert result == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]},
                                            {"itemIdentifier": records[2]["messageId"]}]}
    check_run(store, run_id, status="completed", servers=[effects])


def deliver_until_dead_lettered(own: OwnExecutor, wait_lease: bool) -> int:
    """Deliver the queue's one message until SQS moves it to the DLQ; the deliveries."""
    deliveries = 0
    for _ in range(own.queue.max_receive_count + 1):
        delivery = own.deliver()
        if not delivery.messages:
            break
        deliveries += 1
        assert delivery.failed, "a message that keeps failing was processed"
        if wait_lease:
            time.sleep(own.engine.settings.lease_seconds + 0.2)
        own.queue.expire(delivery.messages)
    return deliveries


def test_poison_message_reaches_the_dead_letter_queue_and_is_dropped_there(
    own: OwnExecutor,
) -> None:
    """A poison message reaches the DLQ after maxReceiveCount deliveries and is dropped.

    The dead-letter function drops it without an error.
    """
    own.queue.send("this message is not a run")

    deliveries = deliver_until_dead_lettered(own, wait_lease=False)
    dead = own.queue.receive(own.queue.dlq_url)
    result = own.queue.deliver(own.dead_letters.dead_letter_handler, dead,
                               url=own.queue.dlq_url)

    assert deliveries == own.queue.max_receive_count == 5
    assert [m["Body"] for m in dead] == ["this message is not a run"]
    assert result.failed == set() and result.raised is None
    assert own.queue.depth() == own.queue.depth(own.queue.dlq_url) == 0


def test_run_whose_executor_keeps_crashing_is_failed_with_the_reason_from_the_dlq(
    own: OwnExecutor, register: Register, effects: MockHttpServer, store: Store
) -> None:
    """A run whose executor keeps crashing is failed, with why, from the DLQ.

    Given an executor that dies in every delivery after the run's http call, the
    message goes to the DLQ after five, and the dead-letter function fails the run,
    saying why; each delivery repeated the call under the same key.
    """
    run_id = own.queue_run(call_workflow(register, effects), {"order": 9})
    # Each delivery dies at its first events write after its own call.
    crash = own.faults.crash("events", run_id=run_id, times=99)
    crash.when = lambda: len(effects.requests) > crash.fired

    deliveries = deliver_until_dead_lettered(own, wait_lease=True)
    dead = own.queue.receive(own.queue.dlq_url)
    result = own.queue.deliver(own.dead_letters.dead_letter_handler, dead,
                               url=own.queue.dlq_url)

    assert deliveries == 5 and len(dead) == 1 and result.failed == set()
    report = check_run(store, run_id, status="failed", servers=[effects], reexecution=True)
    assert "failed this run's message" in report.record["error_message"]
    assert "dead-letter queue" in report.record["error_message"]
    assert report.events[-1]["error"] == report.record["error_message"]
    assert report.resumed == ["recovered"] * 4
    assert report.requests == {f"{run_id}/call/1": 5}


# -- 6. a step that outlasts its timeout -------------------------------------------------

TIMEOUT_STEPS = """
- id: start
  type: trigger
- id: slow
  type: http
  url: "{url}"
  timeout: 1.5
  retry: {{attempts: 3, backoff: {{initial: 0.1}}, jitter: false, on: [timeout, "5xx"]}}
  on_error: {{goto: recover}}
- id: passed_over
  type: notify
  channel: log
  message: "not reached"
- id: recover
  type: notify
  channel: log
  message: "recovered from {{slow.error.kind}} after {{slow.error.attempts}} attempts"
"""


def _busy_then_silent(effects: MockHttpServer) -> None:
    """``GET /flaky``: 503 at once the first time, then 200 only after 5 s."""
    seen: list[RecordedRequest] = []

    def answer(request: RecordedRequest) -> Reply:
        seen.append(request)
        if len(seen) == 1:
            return json_reply(503, {"error": "busy"})
        return Reply(200, b"{}", {"Content-Type": "application/json"}, delay=5.0)

    effects.respond_with("GET", "/flaky", answer)


def _at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def test_step_over_its_timeout_fails_as_timeout_within_it_after_its_retries(
    stack_executor: ModuleType, stack_engine: Engine, register: Register,
    effects: MockHttpServer, store: Store,
) -> None:
    """A step over its timeout fails as timeout within it, after its retries.

    Given an http step with timeout 1.5 s whose server answers 503, then nothing for
    5 s: it retries once, fails with kind timeout about 1.5 s after it started, and
    on_error's goto runs the recovery step.
    """
    _busy_then_silent(effects)
    workflow_id = register(TIMEOUT_STEPS.format(url=effects.url("/flaky")))
    run_id = stack_engine.create_run(workflow_id, {}, None, "queued")["run_id"]

    clock = time.monotonic()
    result = invoke(stack_executor.handler, sqs_record(run_message(run_id)))
    elapsed = time.monotonic() - clock

    assert result == {"batchItemFailures": []}
    report = check_run(store, run_id, status="completed", servers=[effects])
    (retrying,) = report.of("step_retrying", "slow")
    assert (retrying["attempt"], retrying["max_attempts"], retrying["error_kind"],
            retrying["status_code"], retrying["delay_seconds"]) == (1, 3, "http_status", 503, 0.1)
    (failed,) = report.of("step_failed", "slow")
    assert failed["error_kind"] == "timeout" and failed["attempts"] == 2
    took = _at(failed) - _at(report.of("step_started", "slow")[0])
    assert 1.4 <= took < 2.5 and elapsed < 4
    assert report.requests == {f"{run_id}/slow/1": 2}
    steps = report.record["steps"]
    assert steps["passed_over"]["status"] == "skipped"
    assert steps["recover"]["output_data"]["message"] == "recovered from timeout after 2 attempts"


# -- 7. a Lambda that runs out of time ---------------------------------------------------

HAND_ON_STEPS = """
- id: start
  type: trigger
- id: call
  type: http
  method: POST
  url: "{url}"
  timeout: 2
- id: second
  type: http
  method: POST
  url: "{url}"
- id: tell
  type: notify
  channel: log
  message: "both called"
"""


def test_invocation_short_of_time_hands_the_run_on_and_the_queue_completes_it(
    stack_executor: ModuleType, stack_engine: Engine, register: Register,
    effects: MockHttpServer, store: Store,
) -> None:
    """An invocation short of time hands the run on; the queue completes it.

    Given an invocation with 20 s left and a step that may take 60 s, the run
    stops before that step, queues its continuation, and the stack's queue and
    executor complete it with run_resumed (continuation), no step run twice.
    """
    workflow_id = register(HAND_ON_STEPS.format(url=effects.url("/effect")))
    run_id = stack_engine.create_run(workflow_id, {}, None, "queued")["run_id"]

    result = stack_executor.handler(sqs_event(sqs_record(run_message(run_id))),
                                    lambda_context(20))
    record = wait_for_end(store, run_id)

    assert result == {"batchItemFailures": []}
    assert record["status"] == "completed"
    report = check_run(store, run_id, status="completed", servers=[effects])
    assert report.resumed == ["continuation"]
    order = [(e["type"], e.get("step_id")) for e in report.events]
    handed_on = order.index(("run_resumed", None))
    assert order[handed_on - 1] == ("step_completed", "call")
    assert order[handed_on + 1] == ("step_started", "second")
    assert report.requests == {f"{run_id}/call/1": 1, f"{run_id}/second/1": 1}
