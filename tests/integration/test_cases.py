"""Cases from ../shared/cases that issues name, run as their reports describe them.

The cases' mock service listens on 127.0.0.1:8765, a fixed port, so every test here
must run on one xdist worker: ``make test`` distributes by file (``--dist loadfile``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stepstream import Engine, Settings
from stepstream_local.stack import LocalStack
from tests.conftest import CASES, ROOT
from tests.integration.conftest import register, sse_events
from tests.support.servers import MockHttpServer, RecordedRequest, Reply, json_reply

QUOTE_BODY = b'{"price": 30.40, "ratio": 0.1, "tiny": 1e-7, "order_id": 12345678901234567890}'


class JobStatus:
    """C16's /job-status: "pending", or "done" from call ``done_from`` on; counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.done_from: int | None = None
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.calls += 1
            done = self.done_from is not None and self.calls >= self.done_from
        return json_reply(200, {"state": "done" if done else "pending"})


def _slow(request: RecordedRequest) -> Reply:
    seconds = float(request.query["seconds"][0])
    reply = json_reply(200, {"slept": seconds})
    return Reply(reply.status, reply.body, reply.headers, delay=seconds)


@pytest.fixture(scope="session")
def job_status() -> JobStatus:
    """The C16 endpoint's state, reset by each test that uses it."""
    return JobStatus()


@pytest.fixture(scope="session")
def case_mock(job_status: JobStatus) -> Iterator[MockHttpServer]:
    """The cases' stand-in for the outside world, on 127.0.0.1:8765."""
    with MockHttpServer(port=8765) as mock:
        mock.route("GET", "/quote", body=QUOTE_BODY, headers={"content-type": "application/json"})
        mock.respond_with("POST", "/echo", lambda request: json_reply(200, request.json()))
        mock.route("GET", "/members/7", json={"first_name": "Zoë", "tier": "gold"})
        mock.route("GET", "/user", json={"name": "Zoë Example", "id": 42})
        mock.respond_with("GET", "/job-status", job_status)
        mock.respond_with("GET", "/slow", _slow)
        mock.respond_with("POST", "/charge", lambda request: json_reply(200, {"ok": True}))
        mock.respond_to_the_rest(lambda request: json_reply(200, {}))
        yield mock


def _case(name: str) -> str:
    return (CASES / f"{name}.yaml").read_text()


def _steps(api: httpx.Client, run_id: str) -> dict[str, dict]:
    run = api.get(f"/api/v1/runs/{run_id}").json()
    return {step["step_id"]: step for step in run["steps"]}


def _registered(api: httpx.Client, text: str) -> str:
    """Register ``text``, replacing an earlier registration of the same trigger path."""
    response = api.post("/api/v1/workflows", json={"yaml_content": text})
    if response.status_code == 409:
        name = text.split("name:", 1)[1].split()[0]
        for workflow in api.get("/api/v1/workflows").json():
            if workflow["name"] == name:
                api.delete(f"/api/v1/workflows/{workflow['id']}")
        response = api.post("/api/v1/workflows", json={"yaml_content": text})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _assert_c01_values(run: dict) -> None:
    assert run["status"] == "completed"
    assert run["trigger_data"] == {"amount": 19.99, "rate": 0.075}
    steps = {step["step_id"]: step for step in run["steps"]}
    quote = steps["quote"]["output_data"]["body"]
    assert quote == {"price": 30.4, "ratio": 0.1, "tiny": 1e-7, "order_id": 12345678901234567890}
    assert isinstance(quote["order_id"], int)
    message = steps["tell"]["output_data"]["message"]
    assert message == "price=30.4 ratio=0.1 order=12345678901234567890 paid=19.99"


def _comparable(run: dict) -> list[dict]:
    steps = []
    for step in run["steps"]:
        step = {k: v for k, v in step.items() if k not in ("started_at", "completed_at")}
        step["output_data"] = {k: v for k, v in step["output_data"].items() if k != "headers"}
        steps.append(step)
    return steps


def test_c01_numbers_round_trip_through_dynamodb_on_every_path(
    api: httpx.Client, case_mock: MockHttpServer
) -> None:
    """C01: fractional and big numbers survive storage on the webhook and the queued path."""
    workflow_id = register(api, (CASES / "C01.yaml").read_text())
    data = {"amount": 19.99, "rate": 0.075}

    hooked = api.post("/api/v1/runs/trigger/c01_fractional_numbers", json=data)
    queued = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": data})
    events = sse_events(api, queued.json()["id"])
    webhook_run = api.get(f"/api/v1/runs/{hooked.json()['run_id']}")
    queued_run = api.get(f"/api/v1/runs/{queued.json()['id']}")

    assert hooked.status_code == 200 and queued.status_code == 202
    _assert_c01_values(webhook_run.json())
    _assert_c01_values(queued_run.json())
    assert "Decimal" not in webhook_run.text + queued_run.text
    assert "30.399999" not in webhook_run.text + queued_run.text
    quote_event = next(e for e in events if e["type"] == "step_completed" and e["step_id"] == "quote")
    assert quote_event["output"]["body"]["order_id"] == 12345678901234567890
    assert quote_event["output"]["body"]["price"] == 30.4
    # Headers differ by nature (request headers, Date); every value must be identical.
    assert _comparable(webhook_run.json()) == _comparable(queued_run.json())
    assert json.loads(queued_run.text)["trigger_data"]["amount"] == 19.99


def test_c02_structures_keep_their_type_or_become_json_text(
    api: httpx.Client, case_mock: MockHttpServer
) -> None:
    """C02: whole-value templates keep lists/booleans/null; inside text they are JSON."""
    _registered(api, _case("C02"))
    body = {"items": [{"name": "Ann Example", "qty": 2}], "vip": True, "note": None}

    response = api.post("/api/v1/runs/trigger/c02_structured_values", json=body)

    assert response.json()["status"] == "completed"
    sent = case_mock.requests_to("/echo")[-1].json()
    assert sent["items"] == body["items"] and sent["vip"] is True and sent["note"] is None
    items_text = json.dumps(body["items"])
    assert sent["summary"] == f"Items: {items_text}; vip=true; note=null"
    assert sent["items_padded"] == items_text + " "
    steps = _steps(api, response.json()["run_id"])
    assert steps["tell"]["output_data"]["message"] == f"Got {items_text}"
    direct = steps["direct"]["output_data"]["message"]
    assert direct == f"Direct {items_text} vip=true note=null"
    for text in (sent["summary"], direct):
        assert not any(bad in text for bad in ("'name'", "True", "None", "[object Object]"))


@pytest.mark.parametrize(
    ("condition", "body", "runs"),
    [
        ("{trigger.body.approved}", {"approved": True}, "ship"),
        ("{trigger.body.approved}", {"approved": False}, "hold"),
        ("{trigger.body.approved}", {"approved": 0}, "hold"),
        ("{trigger.body.approved} == true", {"approved": True}, "ship"),
        ("{trigger.body.approved} == true", {"approved": False}, "hold"),
        ("{trigger.body.approved} == true", {"approved": 0}, "hold"),
    ],
)
def test_c03_booleans_and_numbers_decide_as_a_user_expects(
    api: httpx.Client, condition: str, body: dict, runs: str
) -> None:
    """C03: JSON true/false/0 pick the branch a user expects, on every path."""
    text = _case("C03").replace('condition: "{trigger.body.approved}"', f'condition: "{condition}"')
    workflow_id = _registered(api, text)

    hooked = api.post("/api/v1/runs/trigger/c03_truthiness", json={**body, "order": "A"})
    synced = api.post(f"/api/v1/runs/{workflow_id}/execute", json={"data": {**body, "order": "A"}})

    for run_id in (hooked.json()["run_id"], synced.json()["id"]):
        steps = _steps(api, run_id)
        other = "hold" if runs == "ship" else "ship"
        assert (steps[runs]["status"], steps[other]["status"]) == ("completed", "skipped")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"approved": "false"}, "'false'"),
        ({"approved": ""}, "''"),
        ({}, "trigger.body.approved"),
    ],
)
def test_c03_text_or_missing_values_fail_the_gate_never_ship(
    api: httpx.Client, body: dict, named: str
) -> None:
    """C03: "false", "" or a missing key fail `gate` with an error naming the value."""
    _registered(api, _case("C03"))

    response = api.post("/api/v1/runs/trigger/c03_truthiness", json={**body, "order": "A-4"})

    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    run_id = response.json()["run_id"]
    steps = _steps(api, run_id)
    assert steps["gate"]["status"] == "failed" and named in steps["gate"]["error_message"]
    assert steps["ship"]["status"] == "skipped"
    failed = [e for e in sse_events(api, run_id) if e["type"] == "step_failed"]
    assert failed[0]["step_id"] == "gate" and named in failed[0]["error"]


def test_c05_reading_a_skipped_step_fails_with_a_clear_error(
    api: httpx.Client, case_mock: MockHttpServer
) -> None:
    """C05: member path completes; guest path fails `receipt`, saying `lookup` was skipped."""
    registered = api.post("/api/v1/workflows", json={"yaml_content": _case("C05")})
    if registered.status_code == 201:
        assert any("may skip" in w["message"] for w in registered.json()["warnings"])
    _registered(api, _case("C05"))

    member = api.post("/api/v1/runs/trigger/c05_skipped_branch_reference",
                      json={"member_id": 7, "email": "zoe@example.test"}).json()
    guest = api.post("/api/v1/runs/trigger/c05_skipped_branch_reference",
                     json={"member_id": 0, "email": "guest@example.test"}).json()

    assert member["status"] == "completed"
    member_steps = _steps(api, member["run_id"])
    message = member_steps["receipt"]["output_data"]["message"]
    assert message == "Thanks Zoë, your order is confirmed."
    assert any(e.get("output", {}).get("message") == message
               for e in sse_events(api, member["run_id"]))
    assert guest["status"] == "failed"
    error = _steps(api, guest["run_id"])["receipt"]["error_message"]
    assert "message" in error and "{lookup.body.first_name}" in error
    assert "step 'lookup' was skipped in this run" in error
    assert "Traceback" not in error and "KeyError" not in error


def test_c05_a_default_lets_the_guest_path_succeed(
    api: httpx.Client, case_mock: MockHttpServer
) -> None:
    """C05: with `?? "friend"` the author asked for a default, and the guest path completes."""
    text = _case("C05").replace("{lookup.body.first_name}", '{lookup.body.first_name ?? \\"friend\\"}')
    _registered(api, text)

    guest = api.post("/api/v1/runs/trigger/c05_skipped_branch_reference",
                     json={"member_id": 0, "email": "guest@example.test"}).json()

    assert guest["status"] == "completed"
    message = _steps(api, guest["run_id"])["receipt"]["output_data"]["message"]
    assert message == "Thanks friend, your order is confirmed."


def test_c06_mistyped_field_fails_the_step_listing_the_keys_that_exist(
    api: httpx.Client, case_mock: MockHttpServer
) -> None:
    """C06: `{fetch.body.nmae}` fails `tell`, naming the reference, the key and `name, id`."""
    _registered(api, _case("C06"))

    run = api.post("/api/v1/runs/trigger/c06_unresolved_reference", json={}).json()

    assert run["status"] == "failed"
    tell = _steps(api, run["run_id"])["tell"]
    assert tell["status"] == "failed"
    error = tell["error_message"]
    assert tell["output_data"] == {"error": {"message": error, "kind": "template",
                                             "status_code": None, "attempts": 1}}
    for part in ("message", "{fetch.body.nmae}", "'nmae'", "name, id"):
        assert part in error


def test_c06_unknown_step_id_is_refused_at_registration(api: httpx.Client) -> None:
    """C06: `{fetsh.body.name}` is a 422 naming step, field, the unknown id and known ids."""
    text = _case("C06").replace("{fetch.body.nmae} (id {fetch.body.id})", "{fetsh.body.name}")
    text = text.replace("c06_unresolved_reference", "c06_unknown_step")
    before = api.get("/api/v1/workflows").json()

    response = api.post("/api/v1/workflows", json={"yaml_content": text})

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["step_id"], error["field"]) == ("tell", "message")
    assert "'fetsh'" in error["message"] and "trigger, start, fetch, tell" in error["message"]
    assert api.get("/api/v1/workflows").json() == before


def test_c06_braces_that_are_not_references_stay_as_written(
    api: httpx.Client, case_mock: MockHttpServer
) -> None:
    """C06: JSON braces in text are left alone; only the real reference is replaced."""
    text = _case("C06").replace(
        'message: "New user {fetch.body.nmae} (id {fetch.body.id})"',
        """message: 'Payload was {"status": "ok"} for {fetch.body.name}'""",
    ).replace("c06_unresolved_reference", "c06_literal_braces")
    _registered(api, text)

    run = api.post("/api/v1/runs/trigger/c06_literal_braces", json={}).json()

    message = _steps(api, run["run_id"])["tell"]["output_data"]["message"]
    assert message == 'Payload was {"status": "ok"} for Zoë Example'


C08_VARIANTS = {
    "on_true twice": (lambda text: text, "on_true", 14, "route"),
    "steps twice": (
        lambda text: text + "steps:\n  - id: only\n    type: trigger\n", "steps", 24, None
    ),
    "step id twice": (
        lambda text: text.replace("id: page_oncall", "id: log_only").replace(
            "on_true: page_oncall", "on_true: log_only"), "log_only", 20, "log_only"
    ),
}


@pytest.mark.parametrize("variant", list(C08_VARIANTS))
def test_c08_keys_written_twice_are_refused_and_nothing_is_stored(
    api: httpx.Client, variant: str
) -> None:
    """C08: a duplicated key or step id is a 422 naming it and its line; nothing stored."""
    change, key, line, step_id = C08_VARIANTS[variant]
    before = api.get("/api/v1/workflows").json()

    response = api.post("/api/v1/workflows", json={"yaml_content": change(_case("C08"))})

    assert response.status_code == 422
    errors = response.json()["errors"]
    named = [e for e in errors if f"'{key}'" in e["message"]]
    assert named and named[0]["line"] == line and named[0].get("step_id") == step_id
    assert "unique" in named[0]["message"]
    assert api.get("/api/v1/workflows").json() == before


def test_c08_control_without_the_duplicate_registers_and_pages(api: httpx.Client) -> None:
    """C08: with line 14 removed the file registers and priority 5 reaches page_oncall."""
    lines = _case("C08").splitlines(keepends=True)
    _registered(api, "".join(lines[:13] + lines[14:]))

    run = api.post("/api/v1/runs/trigger/c08_duplicate_keys", json={"priority": 5}).json()

    assert _steps(api, run["run_id"])["page_oncall"]["status"] == "completed"


C09_ROWS = [
    ({"role": "admin", "name": "ann"}, "grant", "/users/ann/grant"),
    ({"role": "guest' or 'a' == 'a", "name": "mallory"}, "deny", "/users/mallory/deny"),
    ({"role": "__import__('os').system('touch c09_marker')", "name": "mallory"}, "deny",
     "/users/mallory/deny"),
    ({"role": "{trigger.body.name}", "name": "admin"}, "deny", "/users/admin/deny"),
    ({"role": "admin", "name": 'Ann "The Boss" O\'Neil\\'}, "grant",
     "/users/Ann%20%22The%20Boss%22%20O%27Neil%5C/grant"),
    ({"role": "guest", "name": "../../admin?force=1#"}, "deny",
     "/users/..%2F..%2Fadmin%3Fforce%3D1%23/deny"),
]


@pytest.mark.parametrize(("body", "branch", "path"), C09_ROWS)
def test_c09_values_from_outside_stay_data(
    api: httpx.Client, case_mock: MockHttpServer, body: dict, branch: str, path: str
) -> None:
    """C09: quotes, code, braces and URL syntax in input never change structure or branch."""
    _registered(api, _case("C09"))
    seen = len(case_mock.requests)

    run = api.post("/api/v1/runs/trigger/c09_values_are_data", json=body).json()

    assert run["status"] == "completed"
    steps = _steps(api, run["run_id"])
    assert steps[branch]["status"] == "completed"
    (request,) = case_mock.requests[seen:]
    assert (request.method, request.path, request.query) == ("POST", path, {})
    assert request.json()["user"] == body["name"]
    assert not Path("c09_marker").exists()


def test_c16_endless_loop_fails_at_the_limit_naming_the_step(
    api: httpx.Client, case_mock: MockHttpServer, job_status: JobStatus
) -> None:
    """C16: an always-pending poll fails the run at max_iterations; no call past the limit."""
    workflow_id = _registered(api, _case("C16"))
    job_status.calls, job_status.done_from = 0, None

    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    events = sse_events(api, run_id)

    assert events[-1]["type"] == "run_failed"
    assert "'poll'" in events[-1]["error"] and "max_iterations is 10" in events[-1]["error"]
    assert job_status.calls == 10
    assert len(events) < 80
    assert api.get(f"/api/v1/runs/{run_id}").json()["status"] == "failed"


def test_c16_loop_that_finishes_shows_every_iteration(
    api: httpx.Client, case_mock: MockHttpServer, job_status: JobStatus
) -> None:
    """C16: done on the third call: poll ran 3 times, report once, each run distinguishable."""
    workflow_id = _registered(api, _case("C16"))
    job_status.calls, job_status.done_from = 0, 3

    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    events = sse_events(api, run_id)

    assert events[-1]["type"] == "run_completed"
    polls = [e["iteration"] for e in events if e["type"] == "step_completed" and e["step_id"] == "poll"]
    assert polls == [1, 2, 3]
    steps = _steps(api, run_id)
    assert [x["iteration"] for x in steps["poll"]["executions"]] == [1, 2, 3]
    assert [x["output_data"]["body"]["state"] for x in steps["poll"]["executions"]] == [
        "pending", "pending", "done"]
    assert steps["report"]["status"] == "completed" and steps["report"]["iteration"] == 1


def test_c12_progress_arrives_while_the_run_goes_not_in_one_burst(
    api: httpx.Client, case_mock: MockHttpServer
) -> None:
    """C12: events reach a streaming client as they happen, through the local entry point."""
    workflow_id = _registered(api, _case("C12"))
    run = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()
    arrivals: list[tuple[float, dict]] = []

    connected = time.time()
    with api.stream("GET", run["stream_url"], timeout=60) as response:
        headers = response.headers
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append((time.time(), json.loads(line[5:])))

    first_at, first = arrivals[0]
    by_kind = {(e["type"], e.get("step_id")): at for at, e in arrivals}
    assert first_at - connected < 1.0
    assert by_kind[("run_completed", None)] - by_kind[("step_completed", "wait1")] >= 4.0
    for at, event in arrivals:
        emitted = datetime.fromisoformat(event["timestamp"]).timestamp()
        assert at - emitted < 1.0, event["type"]
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] in ("no-cache", "no-store")
    assert headers["x-accel-buffering"] == "no"
    assert "content-length" not in headers and headers.get("content-encoding") != "gzip"


def _sqs_record(message_id: str, body: str, receive_count: int = 1) -> dict:
    event = json.loads((ROOT / "tests" / "events" / "sqs_run_batch.json").read_text())
    record = event["Records"][0]
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return {**record, "messageId": message_id, "body": body}


def _charges(mock: MockHttpServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in mock.requests_to("/charge"):
        counts[request.json()["order"]] = counts.get(request.json()["order"], 0) + 1
    return counts


@pytest.mark.parametrize("poison", ['{"run_id": "does-not-exist"}', "this is not json"])
def test_c10_partial_batch_failure_redelivers_only_the_poison_record(
    api: httpx.Client, stack: LocalStack, case_mock: MockHttpServer, poison: str
) -> None:
    """C10: one bad record fails alone; finished runs are neither redone nor re-announced."""
    workflow_id = _registered(api, _case("C10"))
    engine = Engine(Settings.from_env())
    orders = {f"A-1-{len(poison)}": 12.5, f"A-3-{len(poison)}": 7}
    runs = {order: engine.create_run(workflow_id, {"order": order, "amount": amount}, None,
                                     "queued")["run_id"] for order, amount in orders.items()}
    first, third = (f"{uuid.uuid4()}" for _ in range(2))
    poisoned = str(uuid.uuid4())
    batch = {"Records": [
        _sqs_record(first, json.dumps({"run_id": runs[list(orders)[0]]})),
        _sqs_record(poisoned, poison),
        _sqs_record(third, json.dumps({"run_id": runs[list(orders)[1]]})),
    ]}
    executor = stack.queue_function("ExecutorFunction")

    result = executor.invoke(batch)
    again = executor.invoke({"Records": [{**batch["Records"][0],
                                          **_sqs_record(first, batch["Records"][0]["body"], 2)}]})

    assert result == {"batchItemFailures": [{"itemIdentifier": poisoned}]}
    assert again == {"batchItemFailures": []}
    counts = _charges(case_mock)
    for order, amount in orders.items():
        assert counts[order] == 1
        sent = [r.json() for r in case_mock.requests_to("/charge") if r.json()["order"] == order]
        assert sent[0]["amount"] == amount and not isinstance(sent[0]["amount"], str)
    for run_id in runs.values():
        assert api.get(f"/api/v1/runs/{run_id}").json()["status"] == "completed"
        kinds = [e["type"] for e in sse_events(api, run_id)]
        assert kinds.count("run_completed") == 1 and kinds.count("run_started") == 1
        seqs = [e["seq"] for e in engine.store.events_after(run_id, 0)]
        assert seqs == list(range(1, len(seqs) + 1))


def test_c10_a_run_whose_step_fails_is_a_processed_message(
    api: httpx.Client, stack: LocalStack
) -> None:
    """C10: a failed step fails the run, not the message: SQS must not retry it."""
    text = _case("C10").replace("http://127.0.0.1:8765/charge", "http://127.0.0.1:9/charge")
    workflow_id = _registered(api, text.replace("c10_side_effect_once", "c10_step_fails"))
    engine = Engine(Settings.from_env())
    run_id = engine.create_run(workflow_id, {"order": "F-1", "amount": 1}, None, "queued")["run_id"]
    executor = stack.queue_function("ExecutorFunction")

    result = executor.invoke({"Records": [_sqs_record("m-1", json.dumps({"run_id": run_id}))]})

    assert result == {"batchItemFailures": []}
    assert api.get(f"/api/v1/runs/{run_id}").json()["status"] == "failed"
