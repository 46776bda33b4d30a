"""Run control over the API: cancel and redrive, and a sync run that outgrows its request."""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stepstream import Engine, Settings, _json
from stepstream.errors import StorageError
from stepstream.runner import NOT_REACHED
from stepstream.store import Store
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
    assert (answer.json()["status"], answer.json()["cancel_requested"]) == ("cancelled", True)
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


def test_cancel_during_a_step_followed_only_by_local_steps_ends_the_run_cancelled(
    api: httpx.Client, upstream: MockHttpServer
) -> None:
    """A cancel answered 202 is kept even when no write would tell the executor of it.

    Given the stack's lease (nothing renews it during a 1.5 s step) and after the http
    step only steps whose events wait for the end's batch, when the run is cancelled
    during the http step, then it ends cancelled and the later steps never start.
    """
    lease = sys.modules["executor_handler"].engine().settings.lease_seconds
    assert lease / 3 > 5, f"a {lease} s lease is renewed during the step: RUN_LEASE_SECONDS set?"
    upstream.route("GET", "/slow", json={"ok": True}, delay=1.5)
    steps = (f"  - id: slow\n    type: http\n    url: {upstream.url('/slow')}\n"
             "  - id: tell\n    type: notify\n    message: told\n"
             "  - id: gate\n    type: condition\n    condition: 'true'\n")
    workflow_id = register(api, _workflow(steps))
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    while not upstream.requests_to("/slow"):
        time.sleep(0.05)

    answer = api.post(f"/api/v1/runs/{run_id}/cancel")

    assert answer.status_code == 202
    run = _finished(api, run_id)
    assert run["status"] == "cancelled"
    steps_by_id = {step["step_id"]: (step["status"], step["error_message"])
                   for step in run["steps"]}
    assert steps_by_id == {"start": ("completed", None), "slow": ("completed", None),
                           "tell": ("skipped", NOT_REACHED), "gate": ("skipped", NOT_REACHED)}
    events = sse_events(api, run_id)
    assert _types(events)[-1] == "run_cancelled"
    assert [e["step_id"] for e in events if e["type"] == "step_started"] == ["start", "slow"]


def test_cancel_in_a_short_retry_wait_ends_the_run_within_a_second(
    api: httpx.Client, upstream: MockHttpServer
) -> None:
    """A backoff the executor sleeps through does not hold a cancel for its whole length.

    Given a 4 s backoff slept in the executor, a cancel made during it (202: the run is
    in the executor's hands) ends the run about a second later, with no second attempt
    and the waiting step failed with the 503 it got.
    """
    upstream.route("GET", "/down", status=503, json={"why": "down"})
    steps = (f"  - id: down\n    type: http\n    url: {upstream.url('/down')}\n"
             "    retry: {attempts: 3, backoff: {initial: 4}, jitter: false}\n")
    workflow_id = register(api, _workflow(steps))
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    while not upstream.requests_to("/down"):
        time.sleep(0.05)
    time.sleep(0.3)  # into the wait

    asked = time.monotonic()
    answer = api.post(f"/api/v1/runs/{run_id}/cancel")
    run = _finished(api, run_id)

    assert answer.status_code == 202
    assert run["status"] == "cancelled"
    assert time.monotonic() - asked < 3, "the cancel waited for the backoff to end"
    assert len(upstream.requests_to("/down")) == 1
    down = next(step for step in run["steps"] if step["step_id"] == "down")
    assert (down["status"], down["output_data"]["error"]["status_code"]) == ("failed", 503)


def _waiting_to_retry(api: httpx.Client, upstream: MockHttpServer, store: Store) -> str:
    """A run whose step ``down`` failed once and waits 30 s in the queue to retry; its id.

    Its steps: ``start`` and ``ok`` completed, ``down`` waiting, ``after`` to come.
    """
    upstream.route("GET", "/ok", json={})
    upstream.route("GET", "/down", status=503, json={})
    steps = (f"  - id: ok\n    type: http\n    url: {upstream.url('/ok')}\n"
             f"  - id: down\n    type: http\n    url: {upstream.url('/down')}\n"
             "    retry: {attempts: 3, backoff: {initial: 30}, jitter: false}\n"
             "  - id: after\n    type: notify\n    message: after\n")
    return _queued_until_it_waits(api, store, steps)


def _queued_until_it_waits(api: httpx.Client, store: Store, steps: str) -> str:
    """Queue a run of ``steps`` and wait until it waits in the queue to retry; its id."""
    workflow_id = register(api, _workflow(steps))
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    deadline = time.monotonic() + 30
    while store.get_run(run_id).get("resume_reason") != "retry_wait":
        assert time.monotonic() < deadline, "the run never went to wait in the queue"
        time.sleep(0.05)
    return run_id


def test_cancel_in_a_queued_retry_wait_keeps_the_steps_completed(
    api: httpx.Client, upstream: MockHttpServer, store: Store
) -> None:
    """The API ends a run waiting in the queue: its count keeps what ran; the rest not reached."""
    run_id = _waiting_to_retry(api, upstream, store)

    answer = api.post(f"/api/v1/runs/{run_id}/cancel")

    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["steps_completed"]) == ("cancelled", 4)
    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert (run["status"], run["steps_completed"], run["total_steps"]) == ("cancelled", 4, 4)
    steps_by_id = {step["step_id"]: (step["status"], step["error_message"])
                   for step in run["steps"]}
    assert steps_by_id["ok"] == ("completed", None)
    assert steps_by_id["after"] == ("skipped", NOT_REACHED)
    listed = api.get("/api/v1/runs", params={"workflow_id": run["workflow_id"]}).json()
    assert [(item["status"], item["steps_completed"]) for item in listed] == [("cancelled", 4)]
    end = sse_events(api, run_id)[-1]
    assert (end["type"], end["steps_completed"], end["progress"]) == ("run_cancelled", 4, 100)


def test_cancel_in_a_queued_retry_wait_ends_the_waiting_step_failed(
    api: httpx.Client, upstream: MockHttpServer, store: Store
) -> None:
    """The step waiting to retry has run (and failed): the API's cancel ends it failed.

    As the runner ends a step in flight when its run is cancelled: not 'not reached'.
    """
    run_id = _waiting_to_retry(api, upstream, store)

    answer = api.post(f"/api/v1/runs/{run_id}/cancel")

    assert answer.status_code == 200
    run = api.get(f"/api/v1/runs/{run_id}").json()
    down = next(step for step in run["steps"] if step["step_id"] == "down")
    assert (down["status"], down["iteration"], down["attempts"]) == ("failed", 1, 1), down
    # Its last failure, as when a cancel ends a short wait in the executor.
    assert "answered 503" in down["error_message"], down
    assert down["output_data"]["error"]["status_code"] == 503
    assert len(upstream.requests_to("/down")) == 1
    assert (run["status"], run["cancel_requested"]) == ("cancelled", True)


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
    upstream.route("GET", "/ship", json={"shipped": True}, delay=1)

    answer = api.post(f"/api/v1/runs/{run_id}/redrive")
    deadline = time.monotonic() + 30
    while len(upstream.requests_to("/ship")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    during = api.get(f"/api/v1/runs/{run_id}").json()

    # It counts the steps it really got to: not 'report', marked not reached.
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    assert answer.json()["steps_completed"] == 3
    assert (during["status"], during["steps_completed"]) == ("running", 3)
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
    # Progress counts the steps decided by the run as a whole, the ones before the redrive too.
    assert (run["steps_completed"], run["total_steps"]) == (4, 4)
    assert (events[-1]["steps_completed"], events[-1]["progress"]) == (4, 100)


def test_redrive_reads_a_large_earlier_output_whole(
    api: httpx.Client, upstream: MockHttpServer
) -> None:
    """An output too large for the run's item is read whole by the steps after a redrive.

    Given an output of about 900 KB of UTF-8 (three stored parts, cut inside characters),
    a step taken up in another invocation reads its fields as the first one would have.
    """
    big = {"x": "hello", "pad": "é" * 450_000, "tail": "end"}
    upstream.route("POST", "/charge", json=big)
    upstream.route("GET", "/ship", status=503, json={"error": "down", "pad": "x" * 40_000})
    charge = upstream.url("/charge")
    steps = (f"  - id: charge\n    type: http\n    method: POST\n    url: {charge}\n"
             f"  - id: ship\n    type: http\n    url: {upstream.url('/ship')}\n"
             "  - id: report\n    type: notify\n"
             "    message: \"x={charge.body.x} tail={charge.body.tail}\"\n")
    workflow_id = register(api, _workflow(steps))
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    assert _finished(api, run_id)["status"] == "failed"
    upstream.route("GET", "/ship", json={"shipped": True})

    assert api.post(f"/api/v1/runs/{run_id}/redrive").status_code == 202

    run = _finished(api, run_id)
    assert run["status"] == "completed", run["error_message"]
    by_id = {step["step_id"]: step for step in run["steps"]}
    assert by_id["report"]["output_data"]["message"] == "x=hello tail=end"
    assert len(upstream.requests_to("/charge")) == 1
    # The API shows the stored summary, and not where the store keeps the rest.
    assert by_id["charge"]["output_data"]["truncated"] is True
    assert "spilled" not in by_id["charge"]
    # Nor in the history of the step that failed with a large output and ran again.
    executions = by_id["ship"]["executions"]
    assert [execution["status"] for execution in executions] == ["failed", "completed"]
    assert not any("spilled" in execution for execution in executions), executions


def test_redrive_the_queue_refuses_leaves_the_run_failed_as_it_was(
    api: httpx.Client, upstream: MockHttpServer
) -> None:
    """A redrive whose message cannot be sent puts the run back: failed, same error.

    Not ``queued`` with no message on its way; a later redrive then works.
    """
    upstream.route("GET", "/ship", status=503, json={"error": "down"})
    steps = f"  - id: ship\n    type: http\n    url: {upstream.url('/ship')}\n"
    workflow_id = register(api, _workflow(steps))
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    failed = _finished(api, run_id)
    assert failed["status"] == "failed"
    settings = Settings.from_env()
    refused = dataclasses.replace(settings, run_queue_url=settings.run_queue_url + "-gone")

    with pytest.raises(StorageError):
        Engine(refused).redrive_run(run_id)

    after = api.get(f"/api/v1/runs/{run_id}").json()
    assert (after["status"], after["error_message"], after["completed_at"]) == (
        "failed", failed["error_message"], failed["completed_at"])
    upstream.route("GET", "/ship", json={"shipped": True})
    assert api.post(f"/api/v1/runs/{run_id}/redrive").status_code == 202
    assert _finished(api, run_id)["status"] == "completed"


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


@pytest.mark.parametrize(("count", "char"), [(15, "x"), (5, "€")], ids=["ascii", "utf8"])
def test_many_outputs_under_the_spill_limit_that_fill_the_run_item_still_complete(
    api: httpx.Client, upstream: MockHttpServer, store: Store, count: int, char: str
) -> None:
    """Outputs of 30 000 characters (30 KB, or 90 KB of UTF-8 for '€'), each under the
    32 KiB spill limit as characters, pass the 400 KB item limit together.

    Each result gets its share of the room left, counted in bytes as DynamoDB counts:
    those that do not fit are kept apart, whole, and the run completes with every result.
    """
    upstream.route("GET", "/part", json={"pad": char * 30_000})
    steps = "".join(f"  - id: p{n}\n    type: http\n    url: {upstream.url('/part')}\n"
                    for n in range(count))
    last = count - 1
    steps += f"  - id: end\n    type: notify\n    message: \"{{p0.body.pad}}{{p{last}.body.pad}}\"\n"
    workflow_id = register(api, _workflow(steps))
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]

    run = _finished(api, run_id, timeout=60)

    assert run["status"] == "completed", run["error_message"]
    assert not run["results_shed"]
    assert {step["status"] for step in run["steps"]} == {"completed"}
    stored = store.get_run(run_id)["steps"]
    kept_apart = [step_id for step_id, result in stored.items() if "spilled" in result]
    assert kept_apart, "every result stayed in the run's item"
    whole = store.whole_outputs(stored)
    assert all(whole[f"p{n}"]["output_data"]["body"]["pad"] == char * 30_000
               for n in range(count))
    assert len(whole["end"]["output_data"]["message"]) == 60_000  # it read both whole


def test_run_whose_input_and_yaml_leave_no_room_ends_failed_and_is_not_redriven(
    api: httpx.Client, upstream: MockHttpServer
) -> None:
    """A 215 KB workflow with a 125 KB input has no room for 70 results: the run ends
    failed, saying why, rather than stay running; with its results dropped from its
    record (its events keep them), a redrive is refused."""
    upstream.route("GET", "/part", json={"pad": "x" * 30_000})
    steps = "".join(f"  - id: p{n}\n    type: http\n    url: {upstream.url('/part')}\n"
                    f"    description: {'d' * 3000}\n" for n in range(70))
    workflow_id = register(api, _workflow(steps))
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async",
                      json={"data": {"big": "y" * 125_000}}).json()["id"]

    run = _finished(api, run_id, timeout=60)
    redrive = api.post(f"/api/v1/runs/{run_id}/redrive")

    assert run["status"] == "failed" and "400 KB" in run["error_message"], run["error_message"]
    assert sse_events(api, run_id)[-1]["type"] == "run_failed"
    assert redrive.status_code == 409 and "outgrew" in redrive.json()["detail"]


def test_failure_kept_over_a_queued_retry_wait_is_read_whole_when_it_stands(
    api: httpx.Client, upstream: MockHttpServer, store: Store
) -> None:
    """A 503 with a 20 KB body, a retry waiting in the queue, and no time left when the
    run wakes (its message came back late): the step fails with the 503 it got, whole,
    and the on_error step reads the body."""
    upstream.route("GET", "/down", status=503, json={"detail": "why", "pad": "x" * 20_000})
    steps = (f"  - id: fetch\n    type: http\n    url: {upstream.url('/down')}\n"
             "    timeout: 60\n    on_error: continue\n"
             "    retry: {attempts: 3, backoff: {initial: 6}, jitter: false}\n"
             "  - id: use\n    type: notify\n    message: \"detail={fetch.body.detail}\"\n")
    run_id = _queued_until_it_waits(api, store, steps)
    # As if the wake-up message came back after the step's deadline (a backlog).
    checkpoint = store.whole_checkpoint(store.get_run(run_id)["checkpoint"])
    assert len(checkpoint["failure"]["output"]["body"]["pad"]) == 20_000
    checkpoint["step_deadline"] = time.time()
    store.client.update_item(
        TableName=store.runs_table, Key={"run_id": {"S": run_id}},
        UpdateExpression="SET checkpoint = :c",
        ExpressionAttributeValues={":c": {"S": _json.dumps(checkpoint)}})

    run = _finished(api, run_id)

    assert len(upstream.requests_to("/down")) == 1
    by_id = {step["step_id"]: step for step in run["steps"]}
    fetch = by_id["fetch"]
    assert fetch["output_data"]["error"]["status_code"] == 503
    assert len(fetch["output_data"]["body"]["pad"]) == 20_000
    assert (run["status"], by_id["use"]["output_data"]["message"]) == ("completed", "detail=why")


def _full_workflow(api: httpx.Client) -> str:
    """100 notify steps with long ids and descriptions: 259 KB of YAML (the limit is 256 KiB
    of text; YAML's line breaks and indent are counted once)."""
    steps = "".join(f"  - id: n{n:03d}_{'i' * 56}\n    type: notify\n    message: hi\n"
                    f"    description: {'d' * 2470}\n" for n in range(100))
    return register(api, _workflow(steps))


def test_sync_run_whose_results_do_not_fit_at_its_end_says_so(
    api: httpx.Client, store: Store
) -> None:
    """Its steps all ran: it ends completed, with results_shed and every step saying where
    its result went (its events), not 'pending'; a redrive is refused."""
    workflow_id = _full_workflow(api)

    answer = api.post(f"/api/v1/runs/{workflow_id}/execute", json={"data": {"big": "y" * 79_750}})

    assert answer.status_code == 201, answer.text
    run = api.get(f"/api/v1/runs/{answer.json()['id']}").json()
    assert (run["status"], run["results_shed"]) == ("completed", True)
    assert {step["status"] for step in run["steps"]} == {"unrecorded"}
    assert "its events" in run["steps"][0]["error_message"]
    events = sse_events(api, run["id"])
    assert events[-1]["type"] == "run_completed"
    assert sum(event["type"] == "step_completed" for event in events) == 101


@pytest.mark.parametrize("how", ["cancel", "dead_letter"])
def test_ending_from_outside_a_run_with_no_room_for_its_skips_ends_it(
    api: httpx.Client, store: Store, how: str
) -> None:
    """A queued 100-step run with a 115 KB input: ended by the API's cancel or by the
    dead-letter function, its 100 'not reached' results do not fit; it ends all the same
    (one write, results dropped), never left running under the ender's lease."""
    workflow_id = _full_workflow(api)
    engine = Engine(Settings.from_env())
    run_id = engine.create_run(workflow_id, {"big": "y" * 115_000}, None, "queued")["run_id"]

    if how == "cancel":
        answer = api.post(f"/api/v1/runs/{run_id}/cancel")
        assert answer.status_code == 200, answer.text
    else:
        assert engine.fail_run(run_id, "its message went to the dead-letter queue") is True

    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == ("cancelled" if how == "cancel" else "failed")
    assert run["results_shed"] is True
    assert float(store.get_run(run_id).get("lease_until", 0)) == 0  # its lease let go
    assert sse_events(api, run_id)[-1]["type"] in ("run_cancelled", "run_failed")


@pytest.mark.parametrize("route", ["execute", "execute-async"])
def test_input_of_400_kb_of_utf8_is_a_413_though_it_is_100_000_characters(
    api: httpx.Client, route: str
) -> None:
    """The input limit counts bytes, as DynamoDB does, not characters."""
    workflow_id = register(api, _workflow("  - id: say\n    type: notify\n    message: hi\n"))

    answer = api.post(f"/api/v1/runs/{workflow_id}/{route}", json={"data": {"e": "😀" * 100_000}})

    assert answer.status_code == 413, answer.text
    assert "bytes of JSON" in answer.json()["detail"]
