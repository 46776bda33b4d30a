"""A run through API -> SQS -> executor -> events -> SSE, on the local stack."""

from __future__ import annotations

import httpx
import redis

from stepstream.events import redis_key
from stepstream_local.stack import LocalStack
from tests.integration.conftest import health_pipeline, sse_events

HEALTH_ORDER = [
    ("run_started", None),
    ("step_started", "receive_event"),
    ("step_completed", "receive_event"),
    ("step_started", "fetch_health"),
    ("step_completed", "fetch_health"),
    ("step_started", "route_on_status"),
    ("step_completed", "route_on_status"),
    ("step_skipped", "notify_degraded"),
    ("step_started", "notify_healthy"),
    ("step_completed", "notify_healthy"),
    ("step_started", "finalize_run"),
    ("step_completed", "finalize_run"),
    ("run_completed", None),
]


def _stored_events(stack: LocalStack, run_id: str) -> list[dict]:
    from stepstream import Settings
    from stepstream.store import Store

    settings = Settings.from_env()
    store = Store(settings.workflows_table, settings.runs_table, settings.events_table)
    return store.events_after(run_id, 0)


def test_health_pipeline_queued_run_streams_every_event_and_completes(
    api: httpx.Client, stack: LocalStack
) -> None:
    """Given the built-in pipeline, when run on the queue, the stream shows 6/6 completed."""
    workflow_id = health_pipeline(api, "queued")

    queued = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}})
    assert queued.status_code == 202
    assert queued.json()["status"] == "queued"
    run_id = queued.json()["id"]
    events = sse_events(api, run_id)

    assert [(e["type"], e.get("step_id")) for e in events] == HEALTH_ORDER
    assert [e["seq"] for e in events] == list(range(1, len(HEALTH_ORDER) + 1))
    assert all(e["sse_id"] == str(e["seq"]) and e["sse_event"] == e["type"] for e in events)
    last = events[-1]
    assert (last["status"], last["steps_completed"], last["total_steps"]) == ("completed", 6, 6)
    fetched = next(e for e in events if e["type"] == "step_completed" and e["step_id"] == "fetch_health")
    assert fetched["output"]["status_code"] == 200
    assert fetched["progress"] == 33


def test_sse_events_equal_stored_events_without_duplicates(
    api: httpx.Client, stack: LocalStack
) -> None:
    """The stream replays exactly the stored log: same events, same order, none twice."""
    workflow_id = health_pipeline(api, "stored")
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]

    streamed = [{k: v for k, v in e.items() if not k.startswith("sse_")}
                for e in sse_events(api, run_id)]

    assert streamed == _stored_events(stack, run_id)
    assert len({e["seq"] for e in streamed}) == len(streamed)


def test_stream_resumes_after_last_event_id_and_after_parameter(api: httpx.Client) -> None:
    """A reconnecting client gets only what follows the position it names."""
    workflow_id = health_pipeline(api, "resume")
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    everything = sse_events(api, run_id)

    by_header = sse_events(api, run_id, headers={"Last-Event-ID": "5"})
    by_query = sse_events(api, run_id, after=10)

    assert [e["seq"] for e in by_header] == [e["seq"] for e in everything[5:]]
    assert [e["seq"] for e in by_query] == [e["seq"] for e in everything[10:]]


def test_run_detail_lists_every_step_with_status_and_output(api: httpx.Client) -> None:
    """GET /runs/{id} after a queued run shows each step, the skipped branch included."""
    workflow_id = health_pipeline(api, "detail")
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {"a": 1}}).json()["id"]
    sse_events(api, run_id)

    run = api.get(f"/api/v1/runs/{run_id}").json()

    assert run["status"] == "completed"
    assert run["trigger_data"] == {"a": 1}
    assert run["started_at"] and run["completed_at"] and run["created_at"]
    statuses = {s["step_id"]: s["status"] for s in run["steps"]}
    assert statuses == {
        "receive_event": "completed", "fetch_health": "completed", "route_on_status": "completed",
        "notify_healthy": "completed", "notify_degraded": "skipped", "finalize_run": "completed",
    }
    healthy = next(s for s in run["steps"] if s["step_id"] == "notify_healthy")
    assert healthy["output_data"]["message"] == "Upstream is healthy (HTTP 200); carrying on."


def test_events_reach_redis_in_the_same_order_as_stored(
    api: httpx.Client, stack: LocalStack, redis_url: str
) -> None:
    """With Redis configured, each run's live stream holds the stored events, ids 0-<seq>."""
    workflow_id = health_pipeline(api, "redis")
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    sse_events(api, run_id)

    entries = redis.Redis.from_url(redis_url).xrange(redis_key(run_id))

    assert [entry_id.decode() for entry_id, _ in entries] == [
        f"0-{e['seq']}" for e in _stored_events(stack, run_id)
    ]
