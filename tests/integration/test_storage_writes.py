"""How the engine writes to DynamoDB: batched events and results, few writes per run."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stepstream import Settings
from stepstream.errors import LeaseLostError, StorageError
from stepstream.store import Progress, RunEnd, Store
from stepstream_local.stack import LocalStack
from tests.integration.conftest import health_pipeline, sse_events, stream_url


@pytest.fixture
def store(stack: LocalStack) -> Store:
    """A store on the stack's tables."""
    settings = Settings.from_env()
    return Store(settings.workflows_table, settings.runs_table, settings.events_table)


OWNER = "executor-1"


def _new_run(store: Store) -> str:
    run_id = str(uuid.uuid4())
    store.put_run({"run_id": run_id, "workflow_id": "wf", "status": "running",
                   "trigger_data": {}, "step_order": [], "total_steps": 2,
                   "steps_completed": 0, "created_at": "2026-01-01T00:00:00+00:00",
                   "lease_owner": OWNER, "lease_until": time.time() + 60})
    return run_id


def _save(store: Store, run_id: str, steps: list[dict[str, Any]], done: int,
          finish: RunEnd | None = None, owner: str = OWNER) -> list[dict[str, Any]]:
    stored, _cancelled = store.save_progress(run_id, owner, Progress(steps, done, 0, None, finish),
                                             time.time() + 60)
    return stored


def test_put_events_writes_a_batch_in_order(store: Store) -> None:
    """A batch of events is stored whole, each under its own seq."""
    run_id = _new_run(store)
    store.put_events(run_id, [(n, "step_started", f'{{"seq":{n}}}') for n in range(1, 6)])

    assert [event["seq"] for event in store.events_after(run_id, 0)] == [1, 2, 3, 4, 5]


def test_put_event_with_a_taken_seq_is_refused(store: Store) -> None:
    """A single event whose seq is taken is refused and the stored one stays."""
    run_id = _new_run(store)
    store.put_events(run_id, [(1, "run_started", '{"seq":1}')])

    with pytest.raises(StorageError, match="written already") as refused:
        store.put_events(run_id, [(1, "run_started", '{"seq":1,"again":true}')])

    assert refused.value.retryable

    assert store.events_after(run_id, 0) == [{"seq": 1}]


def test_progress_of_an_executor_without_the_lease_is_refused(store: Store) -> None:
    """Only the lease's owner records progress; another writer changes nothing."""
    run_id = _new_run(store)
    _save(store, run_id, [{"step_id": "a", "status": "completed", "output_data": {}}], 1)

    with pytest.raises(LeaseLostError):
        _save(store, run_id, [{"step_id": "a", "status": "failed", "output_data": {}}], 1,
              owner="executor-2")

    assert store.get_run(run_id)["steps"]["a"]["status"] == "completed"


def test_save_progress_records_results_and_the_end_in_one_write(store: Store) -> None:
    """Several results, the count and the run's end land together; outputs stay JSON."""
    run_id = _new_run(store)
    steps = [{"step_id": "a", "status": "completed", "output_data": {"n": 12345678901234567890}},
             {"step_id": "b", "status": "skipped", "output_data": {}}]
    _save(store, run_id, steps, 2, RunEnd("failed", "2026-01-01T00:00:01+00:00", "boom"))

    run = store.get_run(run_id)
    assert run["steps"]["a"]["output_data"] == {"n": 12345678901234567890}
    assert run["steps"]["b"]["status"] == "skipped"
    assert (run["steps_completed"], run["status"], run["error_message"]) == (2, "failed", "boom")


def test_save_progress_bounds_a_large_output(store: Store) -> None:
    """An output past the limit is stored as a marked summary, and returned as stored."""
    run_id = _new_run(store)
    big = {"step_id": "a", "status": "completed", "output_data": {"text": "x" * 40_000}}
    (stored,) = _save(store, run_id, [big], 1)

    assert stored["output_data"]["truncated"] is True
    assert store.get_run(run_id)["steps"]["a"] == stored
    # Kept whole beside the run, for a run taken up elsewhere.
    assert store.whole_outputs({"a": stored})["a"]["output_data"] == big["output_data"]


def test_save_progress_keeps_a_large_checkpoint_apart_and_reads_it_back(store: Store) -> None:
    """A checkpoint past CHECKPOINT_LIMIT (a failure's large output) is named, not held."""
    run_id = _new_run(store)
    small = {"index": 1}
    large = {"index": 2, "failure": {"output": {"body": "é" * 20_000}}}

    for checkpoint in (small, large):
        store.save_progress(run_id, OWNER, Progress([], 0, 0, checkpoint), time.time() + 60)
        kept = store.get_run(run_id)["checkpoint"]

        assert ("spilled" in kept) is (checkpoint is large)
        assert store.whole_checkpoint(kept) == checkpoint


@pytest.fixture
def executor_writes(stack: LocalStack) -> Iterator[Counter[str]]:
    """DynamoDB operations of the stack's executor, counted while the test runs."""
    client = sys.modules["executor_handler"].engine().store.client
    counts: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counts[model.name] += 1

    client.meta.events.register("after-call", count)
    yield counts
    client.meta.events.unregister("after-call", count)


def test_queued_run_writes_its_events_and_results_in_few_writes(
    api: httpx.Client, executor_writes: Counter[str]
) -> None:
    """The health pipeline's queued run: a claim, two batches, then the terminal event.

    The terminal event is written on its own after the record says the run ended
    (see ``_StoredRecorder``).
    """
    workflow_id = health_pipeline(api, "writes")
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    events = sse_events(api, run_id)

    assert events[-1]["type"] == "run_completed" and len(events) == 13
    assert api.get(f"/api/v1/runs/{run_id}").json()["steps_completed"] == 6
    assert executor_writes == Counter(UpdateItem=3, BatchWriteItem=2, PutItem=1)


def test_runs_queued_together_each_store_every_event_once(api: httpx.Client, store: Store) -> None:
    """Ten runs queued at once all complete, each with seqs 1..13 and nothing more."""
    workflow_id = health_pipeline(api, "together")
    run_ids = [api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
               for _ in range(10)]

    for run_id in run_ids:
        assert sse_events(api, run_id)[-1]["type"] == "run_completed"
        assert [event["seq"] for event in store.events_after(run_id, 0)] == list(range(1, 14))


def _event(run_id: str, seq: int, kind: str) -> tuple[int, str, str]:
    event = {"type": kind, "run_id": run_id, "seq": seq, "timestamp": "2026-01-01T00:00:00+00:00",
             "steps_completed": 0, "total_steps": 2, "progress": 0}
    return seq, kind, json.dumps(event)


@pytest.mark.parametrize("position", [0, 1])
def test_finished_run_streams_a_last_batch_stored_after_its_record(
    api: httpx.Client, store: Store, position: int
) -> None:
    """A client early for a finished run's last batch gets it, not a 204."""
    run_id = _new_run(store)
    store.put_events(run_id, [_event(run_id, 1, "run_started")])
    store.finish_run(run_id, "completed", "2026-01-01T00:00:01+00:00", None)
    rest = [_event(run_id, 2, "step_started"), _event(run_id, 3, "run_completed")]
    later = threading.Timer(0.3, store.put_events, (run_id, rest))
    later.start()
    try:
        headers = {"Last-Event-ID": str(position)} if position else {}
        events = sse_events(api, run_id, headers=headers)
    finally:
        later.join()

    assert [event["seq"] for event in events] == list(range(position + 1, 4))


def test_finished_run_past_its_end_is_204(api: httpx.Client, store: Store) -> None:
    """A client that has the terminal event, or claims a seq past it, is told to stop."""
    run_id = _new_run(store)
    store.put_events(run_id, [_event(run_id, 1, "run_started"), _event(run_id, 2, "run_failed")])
    store.finish_run(run_id, "failed", "2026-01-01T00:00:01+00:00", "boom")
    url = stream_url(api, run_id)

    assert api.get(url, headers={"Last-Event-ID": "2"}).status_code == 204
    assert api.get(url, headers={"Last-Event-ID": "7"}).status_code == 204
    assert api.get(url, headers={"Last-Event-ID": "1"}).status_code == 200
