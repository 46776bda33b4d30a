"""How the engine writes to DynamoDB: batched events and results, few writes per run."""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stepstream import Settings, StorageError
from stepstream.store import RunEnd, Store
from stepstream_local.stack import LocalStack
from tests.integration.conftest import health_pipeline, sse_events


@pytest.fixture
def store(stack: LocalStack) -> Store:
    """A store on the stack's tables."""
    settings = Settings.from_env()
    return Store(settings.workflows_table, settings.runs_table, settings.events_table)


def _new_run(store: Store) -> str:
    run_id = str(uuid.uuid4())
    store.put_run({"run_id": run_id, "workflow_id": "wf", "status": "running",
                   "trigger_data": {}, "step_order": [], "total_steps": 2,
                   "steps_completed": 0, "created_at": "2026-01-01T00:00:00+00:00"})
    return run_id


def test_put_events_writes_a_batch_in_order(store: Store) -> None:
    """A batch of events is stored whole, each under its own seq."""
    run_id = _new_run(store)
    store.put_events(run_id, [(n, "step_started", f'{{"seq":{n}}}') for n in range(1, 6)])

    assert [event["seq"] for event in store.events_after(run_id, 0)] == [1, 2, 3, 4, 5]


def test_put_events_with_a_taken_seq_writes_none_of_the_batch(store: Store) -> None:
    """If one seq of a batch is taken, the write is refused and nothing of it is stored."""
    run_id = _new_run(store)
    store.put_events(run_id, [(1, "run_started", '{"seq":1}')])

    with pytest.raises(StorageError):
        store.put_events(run_id, [(2, "step_started", '{"seq":2}'),
                                  (1, "run_started", '{"seq":1,"again":true}')])

    assert store.events_after(run_id, 0) == [{"seq": 1}]


def test_put_steps_records_results_and_the_end_in_one_write(store: Store) -> None:
    """Several results, the count and the run's end land together; outputs stay JSON."""
    run_id = _new_run(store)
    steps = [{"step_id": "a", "status": "completed", "output_data": {"n": 12345678901234567890}},
             {"step_id": "b", "status": "skipped", "output_data": {}}]
    store.put_steps(run_id, steps, 2, RunEnd("failed", "2026-01-01T00:00:01+00:00", "boom"))

    run = store.get_run(run_id)
    assert run["steps"]["a"]["output_data"] == {"n": 12345678901234567890}
    assert run["steps"]["b"]["status"] == "skipped"
    assert (run["steps_completed"], run["status"], run["error_message"]) == (2, "failed", "boom")


def test_put_steps_bounds_a_large_output(store: Store) -> None:
    """An output past the limit is stored as a marked summary, and returned as stored."""
    run_id = _new_run(store)
    big = {"step_id": "a", "status": "completed", "output_data": {"text": "x" * 40_000}}
    (stored,) = store.put_steps(run_id, [big], 1)

    assert stored["output_data"]["truncated"] is True
    assert store.get_run(run_id)["steps"]["a"] == stored


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
    """The health pipeline's queued run: a claim, then two batches of results and events."""
    workflow_id = health_pipeline(api, "writes")
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    events = sse_events(api, run_id)

    assert events[-1]["type"] == "run_completed" and len(events) == 13
    assert api.get(f"/api/v1/runs/{run_id}").json()["steps_completed"] == 6
    assert executor_writes == Counter(UpdateItem=3, TransactWriteItems=2)
