"""The stored recorder's batches: what is written when, in which order, and what it keeps."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from textwrap import dedent, indent
from typing import Any

import pytest

from stepstream.definition import Step, Workflow, parse_workflow
from stepstream.errors import LeaseLostError, StorageError
from stepstream.nodes import may_block
from stepstream.runner import NOT_REACHED, Checkpoint, Resume, StepResult, run_workflow
from stepstream.service import FLUSH_EVENTS, _RunControl, _StoredRecorder
from stepstream.store import Progress, Release
from tests.support.servers import MockHttpServer, RecordedRequest, Reply, json_reply

LEASE_SECONDS = 90.0


@dataclass
class FakeStore:
    """Keeps every write in order, in one log shared with the publisher.

    Entries: ``("events", seqs, types)``, ``("progress", Progress, lease_until)``,
    ``("renew", until)``; the publisher adds ``("redis", seqs)``.
    """

    writes: list[tuple[Any, ...]] = field(default_factory=list)
    refuse_events: int = 0
    # What save_progress and renew_lease answer: whether a cancel was requested.
    cancel: bool = False
    lose_lease: bool = False
    # Reads of the cancel flag alone (cancel_requested), not made by a write.
    cancel_reads: int = 0

    def save_progress(self, run_id: str, owner: str, progress: Progress,
                      lease_until: float) -> tuple[list[dict[str, Any]], bool]:
        """Keep the write (or lose the lease); return the results as stored and the flag."""
        if self.lose_lease:
            raise LeaseLostError(f"run {run_id} has another executor now")
        self.writes.append(("progress", progress, lease_until))
        return progress.steps, self.cancel

    def put_events(self, run_id: str, events: list[tuple[int, str, str]]) -> None:
        """Keep the write, or refuse it while ``refuse_events`` lasts."""
        if self.refuse_events:
            self.refuse_events -= 1
            raise StorageError("DynamoDB refused the events")
        self.writes.append(("events", [e[0] for e in events], [e[1] for e in events]))

    def renew_lease(self, run_id: str, owner: str, until: float) -> bool:
        """Keep the renewal; return the cancel flag."""
        self.writes.append(("renew", until))
        return self.cancel

    def cancel_requested(self, run_id: str) -> bool:
        """Count the read; return the cancel flag."""
        self.cancel_reads += 1
        return self.cancel

    def events(self) -> list[tuple[list[int], list[str]]]:
        """Each events write as (seqs, types)."""
        return [(w[1], w[2]) for w in self.writes if w[0] == "events"]

    def progress(self) -> list[Progress]:
        """Each record write's Progress, in order."""
        return [w[1] for w in self.writes if w[0] == "progress"]

    def kinds(self) -> list[str]:
        """The kind of each write, in order."""
        return [w[0] for w in self.writes]


@dataclass
class FakePublisher:
    """Keeps each Redis round trip's events, in the store's log too."""

    batches: list[list[int]] = field(default_factory=list)
    log: list[tuple[Any, ...]] | None = None

    def publish_many(self, run_id: str, events: list[tuple[int, str]]) -> None:
        """Keep the round trip's seqs."""
        self.batches.append([seq for seq, _text in events])
        if self.log is not None:
            self.log.append(("redis", self.batches[-1]))


@dataclass(frozen=True)
class FakeSettings:
    """The settings the recorder reads."""

    lease_seconds: float = LEASE_SECONDS


@dataclass
class FakeEngine:
    """What the recorder uses of an engine."""

    store: FakeStore = field(default_factory=FakeStore)
    publisher: FakePublisher = field(default_factory=FakePublisher)
    settings: FakeSettings = field(default_factory=FakeSettings)

    def __post_init__(self) -> None:
        self.publisher.log = self.store.writes


def workflow(steps: str, top: str = "") -> Workflow:
    return parse_workflow(f"name: wf\n{top}steps:\n" + indent(dedent(steps), "  "))


def recorder_for(wf: Workflow, engine: FakeEngine) -> _StoredRecorder:
    recorder = _StoredRecorder(engine, "run-1", owner="lease-1",
                               record={"run_id": "run-1", "status": "running"})
    recorder.blocking = frozenset(step.id for step in wf.steps if may_block(step))
    return recorder


def run(wf: Workflow, engine: FakeEngine) -> _StoredRecorder:
    recorder = recorder_for(wf, engine)
    run_workflow(wf, "run-1", {"body": {}, "headers": {}}, recorder)
    return recorder


HEALTH = """\
- id: receive_event
  type: trigger
- id: fetch_health
  type: http
  url: {url}
- id: route_on_status
  type: condition
  condition: "{{fetch_health.status_code}} == 200"
  on_true: notify_healthy
  on_false: notify_degraded
- id: notify_healthy
  type: notify
  message: healthy
- id: notify_degraded
  type: notify
  message: degraded
- id: finalize_run
  type: notify
  message: done
"""


def test_blocking_step_has_its_start_stored_before_it_runs(mock_http: MockHttpServer) -> None:
    """While an http step waits for its answer, its step_started is already stored."""
    engine = FakeEngine()
    seen_while_waiting: list[list[str]] = []

    def answer(_request: RecordedRequest) -> Reply:
        seen_while_waiting.append([t for _seqs, types in engine.store.events() for t in types])
        return json_reply(200, {"status": "ok"})

    mock_http.respond_with("GET", "/health", answer)
    run(workflow(HEALTH.format(url=mock_http.url("/health"))), engine)

    assert seen_while_waiting == [
        ["run_started", "step_started", "step_completed", "step_started"]]
    assert engine.publisher.batches[0] == [1, 2, 3, 4]


def test_steps_that_stay_in_the_process_share_one_write(mock_http: MockHttpServer) -> None:
    """The health pipeline's 13 events take two batches: two record writes, two round trips.

    The last batch writes its events in two parts: all but the terminal one before the
    record, the terminal one after it.
    """
    mock_http.route("GET", "/health", json={"status": "ok"})
    engine = FakeEngine()
    run(workflow(HEALTH.format(url=mock_http.url("/health"))), engine)

    assert [seqs for seqs, _types in engine.store.events()] == [
        [1, 2, 3, 4], list(range(5, 13)), [13]]
    assert engine.publisher.batches == [[1, 2, 3, 4], list(range(5, 14))]
    assert len(engine.store.progress()) == 2
    assert engine.store.events()[-1][1] == ["run_completed"]


def test_each_batch_writes_events_then_record_then_terminal_event_then_redis(
    mock_http: MockHttpServer,
) -> None:
    """Events first, then the record; the terminal event only once the record is final."""
    mock_http.route("GET", "/health", json={"status": "ok"})
    engine = FakeEngine()
    run(workflow(HEALTH.format(url=mock_http.url("/health"))), engine)

    assert engine.store.kinds() == ["events", "progress", "redis",
                                    "events", "progress", "events", "redis"]
    first, last = engine.store.progress()
    assert ([s["step_id"] for s in first.steps], first.steps_completed) == (["receive_event"], 1)
    assert first.finish is None and first.end_event is None
    assert [s["step_id"] for s in last.steps] == [
        "fetch_health", "route_on_status", "notify_degraded", "notify_healthy", "finalize_run"]
    assert last.steps_completed == 6
    assert last.finish is not None
    assert (last.finish.status, last.finish.error) == ("completed", None)


def test_the_record_keeps_the_terminal_event_to_repair_a_crash_after_it(
    mock_http: MockHttpServer,
) -> None:
    """The end's record write carries the terminal event's text, as written after it."""
    mock_http.route("GET", "/health", json={"status": "ok"})
    engine = FakeEngine()
    run(workflow(HEALTH.format(url=mock_http.url("/health"))), engine)

    last = engine.store.progress()[-1]
    assert last.end_event is not None
    event = json.loads(last.end_event)
    assert (event["type"], event["seq"], event["status"]) == ("run_completed", 13, "completed")
    assert last.finish is not None and event["timestamp"] == last.finish.completed_at


def test_each_record_write_moves_last_seq_to_the_batch_end(mock_http: MockHttpServer) -> None:
    """last_seq goes 4 with the first batch and 13 with the last: the record names its events."""
    mock_http.route("GET", "/health", json={"status": "ok"})
    engine = FakeEngine()
    run(workflow(HEALTH.format(url=mock_http.url("/health"))), engine)

    assert [progress.last_seq for progress in engine.store.progress()] == [4, 13]


def test_each_batch_writes_the_checkpoint_as_it_stands(mock_http: MockHttpServer) -> None:
    """The first batch's checkpoint has the http step in flight; the last is past the end."""
    mock_http.route("GET", "/health", json={"status": "ok"})
    engine = FakeEngine()
    run(workflow(HEALTH.format(url=mock_http.url("/health"))), engine)

    first, last = (Checkpoint.from_dict(p.checkpoint or {}) for p in engine.store.progress())
    assert (first.index, first.inflight, first.attempt) == (1, True, 1)
    assert first.visits == {"receive_event": 1, "fetch_health": 1}
    assert (last.index, last.inflight) == (6, False)
    assert last.passed == ["notify_degraded"]



def test_the_batch_of_step_retrying_writes_a_checkpoint_naming_the_next_attempt(
    mock_http: MockHttpServer,
) -> None:
    """An executor that dies in the retry wait leaves a record whose next attempt is 2.

    The failed attempt is over once its step_retrying is written: a run taken up from
    that record does not make it again.
    """
    mock_http.route("GET", "/down", status=503)
    engine = FakeEngine()
    run(workflow(f"""\
        - id: start
          type: trigger
        - id: fetch
          type: http
          url: {mock_http.url("/down")}
          retry: {{attempts: 2, backoff: {{initial: 0.01}}, jitter: false}}
        """), engine)

    writes = engine.store.writes
    at = next(i for i, w in enumerate(writes) if w[0] == "events" and "step_retrying" in w[2])
    progress = next(w[1] for w in writes[at:] if w[0] == "progress")
    checkpoint = Checkpoint.from_dict(progress.checkpoint or {})
    assert (checkpoint.index, checkpoint.inflight, checkpoint.attempt) == (1, True, 2)


def test_run_taken_up_from_a_batch_ending_on_a_step_result_does_not_run_that_step_again() -> None:
    """Given 12 log steps after the trigger, event 25 is tell_11's step_completed.

    The executor dies after writing that batch; another takes the run up from the record.
    """
    steps = "- id: start\n  type: trigger\n" + "".join(
        f"- id: tell_{n}\n  type: notify\n  message: hi\n" for n in range(1, 13))
    wf = workflow(steps, top="max_iterations: 1\n")
    engine = FakeEngine()
    run(wf, engine)
    batch = engine.store.progress()[0]
    assert batch.last_seq == FLUSH_EVENTS and batch.checkpoint is not None
    resume = Resume(Checkpoint.from_dict(batch.checkpoint),
                    {step["step_id"]: step for step in batch.steps}, "recovered", 2)

    outcome = run_workflow(wf, "run-1", {"body": {}, "headers": {}},
                           recorder_for(wf, FakeEngine()), resume=resume)

    assert (outcome.status, outcome.error) == ("completed", None)
    tell_11 = next(result for result in outcome.results if result.step_id == "tell_11")
    assert tell_11.iteration == 1


def test_a_recorder_the_runner_does_not_track_writes_no_checkpoint() -> None:
    engine = FakeEngine()
    recorder = _StoredRecorder(engine, "run-1")
    recorder.emit("step_progress", {"step_id": "ask", "text": "Hel"})

    assert engine.store.progress()[0].checkpoint is None


def test_record_write_extends_the_lease_by_the_settings_lease_seconds() -> None:
    engine = FakeEngine()
    recorder = _StoredRecorder(engine, "run-1", owner="lease-1")

    before = time.time()
    recorder.emit("step_progress", {"step_id": "ask", "text": "Hel"})

    [(_kind, _progress, lease_until)] = [w for w in engine.store.writes if w[0] == "progress"]
    assert before + LEASE_SECONDS <= lease_until <= time.time() + LEASE_SECONDS


def test_flush_with_a_release_writes_it_with_the_record_and_no_event() -> None:
    """A run let go (to wait in the queue) writes its reason and wake time, nothing else."""
    engine = FakeEngine()
    recorder = _StoredRecorder(engine, "run-1", owner="lease-1", seq=7)

    recorder.flush(release=Release("retry_wait", 1234.5))

    assert engine.store.kinds() == ["progress"]
    [progress] = engine.store.progress()
    assert progress.release == Release("retry_wait", 1234.5)
    assert (progress.finish, progress.last_seq, progress.steps) == (None, 7, [])
    assert engine.publisher.batches == []


def test_flush_with_a_release_writes_what_was_still_gathered_first() -> None:
    """Events held back (steps that stay in the process) go out before the release."""
    engine = FakeEngine()
    recorder = _StoredRecorder(engine, "run-1")
    recorder.blocking = frozenset()
    recorder.emit("step_started", {"step_id": "gate"})

    recorder.flush(release=Release("continuation"))

    assert engine.store.kinds() == ["events", "progress", "redis"]
    assert engine.store.progress()[0].release == Release("continuation")


def test_cancel_flag_of_a_record_write_sets_cancel_requested() -> None:
    engine = FakeEngine(FakeStore(cancel=True))
    recorder = _StoredRecorder(engine, "run-1")
    assert recorder.cancel_requested is False

    recorder.emit("step_progress", {"step_id": "ask", "text": "Hel"})

    assert recorder.cancel_requested is True


def test_cancel_requested_stays_set_after_a_write_without_the_flag() -> None:
    engine = FakeEngine(FakeStore(cancel=True))
    recorder = _StoredRecorder(engine, "run-1")
    recorder.emit("step_progress", {"step_id": "ask", "text": "Hel"})
    engine.store.cancel = False

    recorder.emit("step_progress", {"step_id": "ask", "text": "Hello"})

    assert recorder.cancel_requested is True


@pytest.mark.parametrize("cancel", [True, False])
def test_renew_extends_the_lease_and_notes_a_cancel(cancel: bool) -> None:
    engine = FakeEngine(FakeStore(cancel=cancel))
    recorder = _StoredRecorder(engine, "run-1", owner="lease-1")

    before = time.time()
    recorder.renew(30.0)

    [(kind, until)] = engine.store.writes
    assert kind == "renew" and before + 30.0 <= until <= time.time() + 30.0
    assert recorder.cancel_requested is cancel


@dataclass
class _CancelFlag:
    """The executor's Control as far as cancelling goes: the recorder's flag."""

    recorder: _StoredRecorder
    worked: bool = False
    step_allowance: float | None = None

    def cancelled(self) -> bool:
        return self.recorder.cancel_requested

    def time_left(self) -> float | None:
        return None

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


def test_a_run_that_sees_its_cancel_flag_stops_before_its_next_step(
    mock_http: MockHttpServer,
) -> None:
    """The cancel flag read back with a batch (here: the http step's start) ends the run."""
    mock_http.route("GET", "/health", json={"status": "ok"})
    engine = FakeEngine(FakeStore(cancel=True))
    wf = workflow(HEALTH.format(url=mock_http.url("/health")))
    recorder = recorder_for(wf, engine)

    outcome = run_workflow(wf, "run-1", {"body": {}, "headers": {}}, recorder,
                           control=_CancelFlag(recorder))

    assert outcome.status == "cancelled"
    assert engine.store.events()[-1][1] == ["run_cancelled"]
    end = engine.store.progress()[-1].finish
    assert end is not None and end.status == "cancelled"


def _control(engine: FakeEngine) -> tuple[_StoredRecorder, _RunControl]:
    recorder = _StoredRecorder(engine, "run-1", owner="lease-1")
    return recorder, _RunControl(recorder, None, threading.Event())


def test_control_with_no_write_for_a_while_reads_the_cancel_flag() -> None:
    """A cancel no write has seen (a long step, a lease renewed rarely) is still found."""
    engine = FakeEngine(FakeStore(cancel=True))
    recorder, control = _control(engine)
    recorder.written_at = control.checked_at = time.monotonic() - 60  # a minute-long step

    assert control.cancelled() is True
    assert engine.store.cancel_reads == 1


def test_control_just_written_makes_no_read_of_its_own() -> None:
    """Right after a write (which reports a cancel itself), asking costs no read."""
    engine = FakeEngine(FakeStore(cancel=True))
    recorder, control = _control(engine)

    assert control.cancelled() is False
    assert engine.store.cancel_reads == 0


def test_cancel_during_a_blocking_step_stops_the_run_when_only_local_steps_follow(
    mock_http: MockHttpServer,
) -> None:
    """A cancel answered 202 is kept though no write comes before the run's end.

    Given a cancel asked while the http step runs (a minute, say: no write meanwhile),
    and after it only steps whose events wait for the end's batch, the run ends
    cancelled before the first of them.
    """
    engine = FakeEngine()
    wf = workflow(f"""\
        - id: start
          type: trigger
        - id: fetch
          type: http
          url: {mock_http.url("/slow")}
        - id: tell
          type: notify
          message: told
        - id: gate
          type: condition
          condition: "true"
        """)
    recorder = recorder_for(wf, engine)
    control = _RunControl(recorder, None, threading.Event())

    def answer(_request: RecordedRequest) -> Reply:
        engine.store.cancel = True
        # As if the step had run for a minute: the last write is that old.
        recorder.written_at = control.checked_at = time.monotonic() - 60
        return json_reply(200, {})

    mock_http.respond_with("GET", "/slow", answer)

    outcome = run_workflow(wf, "run-1", {"body": {}, "headers": {}}, recorder, control)

    assert outcome.status == "cancelled"
    results = {result.step_id: (result.status, result.error) for result in outcome.results}
    assert results == {"start": ("completed", None), "fetch": ("completed", None),
                       "tell": ("skipped", NOT_REACHED), "gate": ("skipped", NOT_REACHED)}
    assert engine.store.events()[-1][1] == ["run_cancelled"]


def test_lost_lease_leaves_the_terminal_event_unwritten() -> None:
    """A record write refused (another executor has the run): no end, no terminal event."""
    engine = FakeEngine(FakeStore(lose_lease=True))
    recorder = _StoredRecorder(engine, "run-1")
    recorder.emit("run_started", {"status": "running"})

    with pytest.raises(LeaseLostError):
        recorder.emit("run_completed", {"status": "completed", "error": None})

    assert engine.store.events() == [([1], ["run_started"])]  # the batch before its end
    assert engine.publisher.batches == []


def test_lost_lease_after_events_were_written_publishes_nothing() -> None:
    """The batch's events are in the table (the next executor numbers after them); Redis waits."""
    engine = FakeEngine(FakeStore(lose_lease=True))
    recorder = _StoredRecorder(engine, "run-1")

    with pytest.raises(LeaseLostError):
        recorder.emit("step_started", {"step_id": "fetch"})

    assert engine.store.events() == [([1], ["step_started"])]
    assert engine.publisher.batches == []


def test_record_kept_as_written(mock_http: MockHttpServer) -> None:
    """The recorder's record ends as the table has it: final status, count, every step."""
    mock_http.route("GET", "/health", json={"status": "ok"})
    recorder = run(workflow(HEALTH.format(url=mock_http.url("/health"))), FakeEngine())

    record = recorder.record
    assert record is not None
    assert record["status"] == "completed" and record["completed_at"]
    assert record["steps_completed"] == 6 and "error_message" not in record
    assert record["last_seq"] == 13 == recorder.seq
    assert record["steps"]["notify_degraded"]["status"] == "skipped"
    assert record["steps"]["fetch_health"]["output_data"]["status_code"] == 200


def test_failed_run_records_its_error() -> None:
    """A failed step's run ends with its error in the record and in run_failed."""
    engine = FakeEngine()
    recorder = run(workflow("""\
        - id: check
          type: condition
          condition: "{trigger.body.missing} == 1"
        """), engine)

    end = engine.store.progress()[-1].finish
    assert end is not None and end.status == "failed" and "check" in (end.error or "")
    assert recorder.record is not None and recorder.record["error_message"] == end.error
    assert engine.store.events()[-1][1] == ["run_failed"]


def test_long_runs_of_local_steps_are_written_every_flush_events() -> None:
    """Without a blocking step, events are still written at least every FLUSH_EVENTS."""
    steps = "".join(f"- id: check_{n}\n  type: condition\n  condition: \"true\"\n"
                    for n in range(40))
    engine = FakeEngine()
    run(workflow(steps), engine)

    sizes = [len(seqs) for seqs, _types in engine.store.events()]
    assert sizes == [FLUSH_EVENTS, FLUSH_EVENTS, FLUSH_EVENTS, 82 - 3 * FLUSH_EVENTS - 1, 1]
    assert len(engine.store.progress()) == 4


def test_restore_keeps_loop_histories_and_appends_new_executions() -> None:
    """A step that ran before the run was taken up keeps that execution in its history."""
    engine = FakeEngine()
    recorder = _StoredRecorder(engine, "run-1")
    earlier = StepResult("poll", "http", "completed", {"n": 1}, iteration=1).as_dict()
    recorder.restore({"poll": earlier}, 1)

    recorder.step_done(StepResult("poll", "http", "completed", {"n": 2}, iteration=2), 1)
    recorder.flush()

    [stored] = engine.store.progress()[0].steps
    assert [e["iteration"] for e in stored["executions"]] == [1, 2]
    assert stored["output_data"] == {"n": 2}


def test_restore_of_a_step_not_reached_keeps_no_history() -> None:
    """A redriven run's step that was only skipped has one execution once it runs: no list."""
    engine = FakeEngine()
    recorder = _StoredRecorder(engine, "run-1")
    skipped = StepResult("tell", "notify", "skipped", error="not reached").as_dict()
    recorder.restore({"tell": skipped}, 1)

    recorder.step_done(StepResult("tell", "notify", "completed", {}, iteration=1), 2)
    recorder.flush()

    [stored] = engine.store.progress()[0].steps
    assert "executions" not in stored
    assert engine.store.progress()[0].steps_completed == 2


def test_progress_is_written_at_once() -> None:
    """A step_progress event (an llm answer so far) is not held back."""
    engine = FakeEngine()
    recorder = _StoredRecorder(engine, "run-1")
    recorder.blocking = frozenset()
    recorder.emit("step_progress", {"step_id": "ask", "text": "Hel"})

    assert engine.store.events() == [([1], ["step_progress"])]


def test_events_of_a_failed_write_are_not_written_again() -> None:
    """After a refused batch, the abort's run_failed goes alone, with the next seq."""
    engine = FakeEngine(FakeStore(refuse_events=1))
    recorder = _StoredRecorder(engine, "run-1")
    recorder.emit("run_started", {"status": "running"})
    with pytest.raises(StorageError):
        recorder.emit("step_started", {"step_id": "fetch"})
    recorder.emit("run_failed", {"status": "failed", "error": "storage"})

    assert engine.store.events() == [([3], ["run_failed"])]


def test_without_a_workflow_every_step_start_is_written_at_once() -> None:
    """A recorder that does not know the steps treats each as blocking."""
    engine = FakeEngine()
    recorder = _StoredRecorder(engine, "run-1")
    recorder.emit("step_started", {"step_id": "anything"})

    assert engine.store.events() == [([1], ["step_started"])]


def test_event_text_is_the_event_as_json() -> None:
    """What is written is the event itself, with its seq, type, run and time."""
    engine = FakeEngine()
    written: list[tuple[int, str, str]] = []
    engine.store.put_events = lambda run_id, events: written.extend(events)  # type: ignore[method-assign]
    recorder = _StoredRecorder(engine, "run-1")
    recorder.emit("run_started", {"status": "running"})
    recorder.emit("step_started", {"step_id": "fetch"})

    event = json.loads(written[1][2])
    assert written[1][:2] == (2, "step_started")
    assert event["seq"] == 2 and event["run_id"] == "run-1" and event["step_id"] == "fetch"


@pytest.mark.parametrize(
    ("config", "blocks"),
    [
        ({"type": "http", "url": "http://x"}, True),
        ({"type": "llm", "prompt": "hi"}, True),
        ({"type": "trigger"}, False),
        ({"type": "condition", "condition": "true"}, False),
        ({"type": "notify"}, False),
        ({"type": "notify", "channel": "log"}, False),
        ({"type": "notify", "channel": "slack"}, False),
        ({"type": "notify", "channel": "webhook", "url": "http://x"}, True),
        ({"type": "something_new"}, True),
    ],
)
def test_may_block_by_type_and_channel(config: dict[str, Any], blocks: bool) -> None:
    """Steps that may wait on the network block; trigger, condition and log-only notify do not."""
    step = Step("s", config["type"], {"id": "s", **config})
    assert may_block(step) is blocks
