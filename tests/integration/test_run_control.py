"""Run control over the API: cancel and redrive, and a sync run that outgrows its request."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stepstream import Engine, Settings
from tests.integration.conftest import register, sse_events
from tests.support.servers import MockHttpServer


@pytest.fixture
def upstream() -> Iterator[MockHttpServer]:
    """A local HTTP service for the runs' http steps."""
    with MockHttpServer() as server:
        yield server


def _workflow(steps: str) -> str:
    return f"name: control_{uuid.uuid4().hex[:12]}\nsteps:\n  - id: start\n    type: trigger\n{steps}"


def _finished(api: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} is still {run['status']} after {timeout} s")


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def test_cancel_of_a_queued_run_ends_it_at_once(api: httpx.Client) -> None:
    """A run no executor has taken yet is cancelled by the request itself: 200, cancelled."""
    workflow_id = register(api, _workflow("  - id: say\n    type: notify\n    message: hi\n"))
    queued = Engine(Settings.from_env()).create_run(workflow_id, {}, None, "queued")

    answer = api.post(f"/api/v1/runs/{queued['run_id']}/cancel")

    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    # The steps it never reached are marked as the runner marks them.
    assert _types(sse_events(api, queued["run_id"])) == [
        "step_skipped", "step_skipped", "run_cancelled"]
    run = api.get(f"/api/v1/runs/{queued['run_id']}").json()
    assert [step["status"] for step in run["steps"]] == ["skipped", "skipped"]
    assert (run["steps_completed"], run["total_steps"]) == (2, 2)


def test_cancel_of_a_running_run_stops_it_before_its_next_step(
    api: httpx.Client, upstream: MockHttpServer
) -> None:
    """The step in flight finishes; the next one never starts; the run ends cancelled."""
    upstream.route("GET", "/slow", json={"ok": True}, delay=1.5)
    upstream.route("GET", "/next", json={"ok": True})
    steps = (f"  - id: slow\n    type: http\n    url: {upstream.url('/slow')}\n"
             f"  - id: after\n    type: http\n    url: {upstream.url('/next')}\n")
    workflow_id = register(api, _workflow(steps))
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    while not upstream.requests_to("/slow"):
        time.sleep(0.05)

    answer = api.post(f"/api/v1/runs/{run_id}/cancel")

    assert answer.status_code == 202
    assert (answer.json()["status"], answer.json()["cancel_requested"]) == ("running", True)
    run = _finished(api, run_id)
    assert run["status"] == "cancelled"
    events = sse_events(api, run_id)
    assert _types(events)[-1] == "run_cancelled"
    assert upstream.requests_to("/next") == []
    steps_by_id = {step["step_id"]: step["status"] for step in run["steps"]}
    assert steps_by_id == {"start": "completed", "slow": "completed", "after": "skipped"}


@pytest.mark.parametrize(("route", "status"), [("cancel", "completed"), ("redrive", "completed")])
def test_control_of_a_finished_run_is_a_conflict(
    api: httpx.Client, route: str, status: str
) -> None:
    """A completed run can be neither cancelled nor redriven: 409, and it stays completed."""
    workflow_id = register(api, _workflow("  - id: say\n    type: notify\n    message: hi\n"))
    run = api.post(f"/api/v1/runs/{workflow_id}/execute", json={"data": {}}).json()

    answer = api.post(f"/api/v1/runs/{run['id']}/{route}")

    assert answer.status_code == 409
    assert "completed" in answer.json()["detail"]
    assert api.get(f"/api/v1/runs/{run['id']}").json()["status"] == status


@pytest.mark.parametrize("route", ["cancel", "redrive"])
def test_control_of_an_unknown_run_is_404(api: httpx.Client, route: str) -> None:
    """A run id that names nothing is a 404, not a 500."""
    assert api.post(f"/api/v1/runs/{uuid.uuid4()}/{route}").status_code == 404


def test_redrive_resumes_a_failed_run_from_the_failed_step(
    api: httpx.Client, upstream: MockHttpServer
) -> None:
    """Earlier steps do not run again; the failed one does; the stream goes on after run_failed."""
    upstream.route("POST", "/charge", json={"charged": True})
    upstream.route("GET", "/ship", status=503, json={"error": "down"})
    steps = (f"  - id: charge\n    type: http\n    method: POST\n    url: {upstream.url('/charge')}\n"
             f"  - id: ship\n    type: http\n    url: {upstream.url('/ship')}\n"
             "  - id: report\n    type: notify\n"
             "    message: \"charged={charge.body.charged} shipped={ship.body.shipped}\"\n")
    workflow_id = register(api, _workflow(steps))
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    failed = _finished(api, run_id)
    assert failed["status"] == "failed" and "answered 503" in failed["error_message"]
    upstream.route("GET", "/ship", json={"shipped": True})

    answer = api.post(f"/api/v1/runs/{run_id}/redrive")

    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    run = _finished(api, run_id)
    assert run["status"] == "completed" and run["error_message"] is None
    report = next(step for step in run["steps"] if step["step_id"] == "report")
    assert report["status"] == "completed", run["steps"]
    assert report["output_data"]["message"] == "charged=true shipped=true"
    assert len(upstream.requests_to("/charge")) == 1
    assert len(upstream.requests_to("/ship")) == 2
    (first, second) = upstream.requests_to("/ship")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    events = sse_events(api, run_id)
    kinds = _types(events)
    assert kinds.index("run_failed") < kinds.index("run_resumed") and kinds[-1] == "run_completed"
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    resumed = events[kinds.index("run_resumed")]
    assert resumed["reason"] == "redrive"


def test_sync_run_that_must_wait_goes_on_in_the_executor(
    api: httpx.Client, upstream: MockHttpServer
) -> None:
    """A retry wait longer than a request should hold returns the run running; it completes."""
    answers = iter([503])
    upstream.respond_with(
        "GET", "/flaky",
        lambda _request: httpx_reply(next(answers, 200)),
    )
    steps = (f"  - id: fetch\n    type: http\n    url: {upstream.url('/flaky')}\n"
             "    retry: {attempts: 2, backoff: {initial: 6}, jitter: false}\n")
    workflow_id = register(api, _workflow(steps))

    started = time.monotonic()
    answer = api.post(f"/api/v1/runs/{workflow_id}/execute", json={"data": {}})

    assert answer.status_code == 201
    assert answer.json()["status"] == "running"
    assert time.monotonic() - started < 5
    run = _finished(api, answer.json()["id"])
    assert run["status"] == "completed"
    assert time.monotonic() - started >= 6
    kinds = _types(sse_events(api, run["id"]))
    assert "step_retrying" in kinds and "run_resumed" in kinds


def httpx_reply(status: int) -> Any:
    """A JSON reply of ``status`` for ``MockHttpServer.respond_with``."""
    from tests.support.servers import json_reply

    return json_reply(status, {"status": status})
