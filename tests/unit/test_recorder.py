"""The stored recorder's batches: what is written when, in which order, and what it keeps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from textwrap import dedent, indent
from typing import Any

import pytest

from stepstream.definition import Step, Workflow, parse_workflow
from stepstream.errors import StorageError
from stepstream.nodes import may_block
from stepstream.runner import run_workflow
from stepstream.service import FLUSH_EVENTS, _StoredRecorder
from stepstream.store import RunEnd, SeqGuard
from tests.support.servers import MockHttpServer, RecordedRequest, Reply, json_reply


@dataclass
class FakeStore:
    """Keeps every write in order: ("steps", ids, count, end, guard), ("events", seqs, types)."""

    writes: list[tuple[Any, ...]] = field(default_factory=list)
    refuse_events: int = 0

    def put_steps(self, run_id: str, steps: list[dict[str, Any]], steps_completed: int,
                  finish: RunEnd | None = None,
                  guard: SeqGuard | None = None) -> list[dict[str, Any]]:
        """Keep the write; return the results as stored."""
        if steps or finish or guard:
            self.writes.append(("steps", [s["step_id"] for s in steps], steps_completed, finish,
                                guard))
        return steps

    def put_events(self, run_id: str, events: list[tuple[int, str, str]]) -> None:
        """Keep the write, or refuse it while ``refuse_events`` lasts."""
        if self.refuse_events:
            self.refuse_events -= 1
            raise StorageError("DynamoDB refused the events")
        self.writes.append(("events", [e[0] for e in events], [e[1] for e in events]))

    def events(self) -> list[tuple[list[int], list[str]]]:
        """Each events write as (seqs, types)."""
        return [(w[1], w[2]) for w in self.writes if w[0] == "events"]


@dataclass
class FakePublisher:
    """Keeps each Redis round trip's events."""

    batches: list[list[int]] = field(default_factory=list)

    def publish_many(self, run_id: str, events: list[tuple[int, str]]) -> None:
        """Keep the round trip's seqs."""
        self.batches.append([seq for seq, _text in events])


@dataclass
class FakeEngine:
    """What the recorder uses of an engine."""

    store: FakeStore = field(default_factory=FakeStore)
    publisher: FakePublisher = field(default_factory=FakePublisher)


def workflow(steps: str) -> Workflow:
    return parse_workflow("name: wf\nsteps:\n" + indent(dedent(steps), "  "))


def recorder_for(wf: Workflow, engine: FakeEngine) -> _StoredRecorder:
    recorder = _StoredRecorder(engine, "run-1", {"run_id": "run-1", "status": "running"})
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
    """The health pipeline's 13 events take two event writes and two Redis round trips."""
    mock_http.route("GET", "/health", json={"status": "ok"})
    engine = FakeEngine()
    run(workflow(HEALTH.format(url=mock_http.url("/health"))), engine)

    batches = engine.store.events()
    assert [seqs for seqs, _types in batches] == [[1, 2, 3, 4], list(range(5, 14))]
    assert engine.publisher.batches == [seqs for seqs, _types in batches]
    assert batches[-1][1][-1] == "run_completed"


def test_step_results_are_stored_before_their_events(mock_http: MockHttpServer) -> None:
    """Each batch writes its step results (and the run's end) first, then its events."""
    mock_http.route("GET", "/health", json={"status": "ok"})
    engine = FakeEngine()
    run(workflow(HEALTH.format(url=mock_http.url("/health"))), engine)

    kinds = [write[0] for write in engine.store.writes]
    assert kinds == ["steps", "events", "steps", "events"]
    first, last = engine.store.writes[0], engine.store.writes[2]
    assert first[1:3] == (["receive_event"], 1)
    assert last[1] == ["fetch_health", "route_on_status", "notify_degraded", "notify_healthy",
                       "finalize_run"]
    assert last[2] == 6 and last[3].status == "completed" and last[3].error is None


def test_each_batch_claims_its_seqs_from_where_the_last_one_ended(
    mock_http: MockHttpServer,
) -> None:
    """The record's guard moves 0 -> 4 with the first batch, then 4 -> 13 with the last."""
    mock_http.route("GET", "/health", json={"status": "ok"})
    engine = FakeEngine()
    run(workflow(HEALTH.format(url=mock_http.url("/health"))), engine)

    guards = [write[4] for write in engine.store.writes if write[0] == "steps"]
    assert guards == [SeqGuard(0, 4), SeqGuard(4, 13)]


def test_a_single_event_needs_no_guard() -> None:
    """One event is written under its own condition; the record's guard stays put."""
    engine = FakeEngine()
    recorder = _StoredRecorder(engine, "run-1")
    recorder.emit("step_progress", {"step_id": "ask", "text": "Hel"})

    assert [write[0] for write in engine.store.writes] == ["events"]
    assert recorder.guarded == 0


def test_record_kept_as_written(mock_http: MockHttpServer) -> None:
    """The recorder's record ends as the table has it: final status, count, every step."""
    mock_http.route("GET", "/health", json={"status": "ok"})
    recorder = run(workflow(HEALTH.format(url=mock_http.url("/health"))), FakeEngine())

    record = recorder.record
    assert record is not None
    assert record["status"] == "completed" and record["completed_at"]
    assert record["steps_completed"] == 6 and "error_message" not in record
    assert record["last_seq"] == 13 and recorder.guarded == 13
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

    end = engine.store.writes[-2][3]
    assert end.status == "failed" and "check" in end.error
    assert recorder.record is not None and recorder.record["error_message"] == end.error
    assert engine.store.events()[-1][1][-1] == "run_failed"


def test_long_runs_of_local_steps_are_written_every_flush_events() -> None:
    """Without a blocking step, events are still written at least every FLUSH_EVENTS."""
    steps = "".join(f"- id: check_{n}\n  type: condition\n  condition: \"true\"\n"
                    for n in range(40))
    engine = FakeEngine()
    run(workflow(steps), engine)

    sizes = [len(seqs) for seqs, _types in engine.store.events()]
    assert sizes == [FLUSH_EVENTS, FLUSH_EVENTS, FLUSH_EVENTS, 82 - 3 * FLUSH_EVENTS]


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
