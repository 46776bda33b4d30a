"""The runner with the real nodes: order, jumps, skips, failures, and the events it emits."""

from __future__ import annotations

from dataclasses import dataclass, field
from textwrap import dedent, indent
from typing import Any

import pytest
from stepstream.definition import Workflow, parse_workflow
from stepstream.runner import (
    EVENT_OUTPUT_LIMIT,
    NOT_REACHED,
    RunOutcome,
    StepResult,
    run_workflow,
    summarize,
)

from tests.support.servers import MockHttpServer, RecordedRequest, Reply, json_reply

PROGRESS = {"steps_completed", "total_steps", "progress"}
STEP_FIELDS = {"step_id", "node_type", "status"} | PROGRESS


@dataclass
class MemoryRecorder:
    """Keeps what the runner reports, in the order it reports it."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    decided: list[tuple[StepResult, int]] = field(default_factory=list)

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Keep one event."""
        self.events.append((event_type, dict(data)))

    def step_done(self, result: StepResult, steps_completed: int) -> None:
        """Keep one step's final result with the count reported alongside it."""
        self.decided.append((result, steps_completed))

    @property
    def types(self) -> list[str]:
        """The event types in order."""
        return [event_type for event_type, _ in self.events]

    def of(self, event_type: str) -> list[dict[str, Any]]:
        """The data of every event of ``event_type``, in order."""
        return [data for kind, data in self.events if kind == event_type]

    def step_events(self) -> list[tuple[str, str]]:
        """(event type, step id) for every step event, in order."""
        return [(kind, data["step_id"]) for kind, data in self.events if "step_id" in data]


def workflow(steps: str, name: str = "wf") -> Workflow:
    """A workflow named ``name`` with the given YAML ``steps`` list."""
    text = f"name: {name}\nsteps:\n" + indent(dedent(steps), "  ")
    return parse_workflow(text)


def run(wf: Workflow, body: Any = None, run_id: str = "run-1") -> tuple[RunOutcome, MemoryRecorder]:
    """Run ``wf`` with ``body`` as the trigger body, keeping what it reports."""
    recorder = MemoryRecorder()
    outcome = run_workflow(wf, run_id, {"body": body or {}, "headers": {}}, recorder)
    return outcome, recorder


def statuses(outcome: RunOutcome) -> dict[str, str]:
    """Each step's final status by step id."""
    return {result.step_id: result.status for result in outcome.results}


def health_pipeline(url: str) -> Workflow:
    """The six-step shape of the built-in health pipeline, fetching ``url``."""
    return workflow(
        f"""\
        - id: receive_event
          type: trigger
        - id: fetch_health
          type: http
          url: {url}
          accept_status: any
        - id: route_on_status
          type: condition
          condition: "{{fetch_health.status_code}} == 200"
          on_true: notify_healthy
          on_false: notify_degraded
        - id: notify_healthy
          type: notify
          message: "healthy ({{fetch_health.status_code}})"
        - id: notify_degraded
          type: notify
          message: "degraded ({{fetch_health.status_code}})"
        - id: finalize_run
          type: notify
          message: done
        """
    )


LINEAR = """\
- id: start
  type: trigger
- id: fetch
  type: http
  url: {url}
- id: tell
  type: notify
  message: "{{trigger.body.who}} got {{fetch.body.name}}"
"""


def test_run_workflow_linear_steps_complete_in_file_order(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/user", json={"name": "Zoë"})

    outcome, recorder = run(workflow(LINEAR.format(url=mock_http.url("/user"))), {"who": "Ann"})

    assert (outcome.status, outcome.steps_completed, outcome.total_steps) == ("completed", 3, 3)
    assert outcome.error is None
    each_step = ["step_started", "step_completed"]
    assert recorder.types == ["run_started", *each_step * 3, "run_completed"]
    assert [result.step_id for result in outcome.results] == ["start", "fetch", "tell"]
    assert outcome.results[0].output == {"body": {"who": "Ann"}, "headers": {}}
    assert outcome.results[2].output["message"] == "Ann got Zoë"


def test_run_workflow_events_carry_original_fields(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/user", json={"name": "Zoë"})

    _, recorder = run(workflow(LINEAR.format(url=mock_http.url("/user"))), {"who": "Ann"})

    [run_started] = recorder.of("run_started")
    assert run_started == {
        "status": "running",
        "steps_completed": 0,
        "total_steps": 3,
        "progress": 0,
    }
    for data in recorder.of("step_started"):
        assert set(data) == STEP_FIELDS | {"iteration"}
        assert (data["status"], data["iteration"]) == ("running", 1)
    completed = recorder.of("step_completed")
    for data in completed:
        assert set(data) == STEP_FIELDS | {"iteration", "output", "duration_ms"}
        assert (data["status"], data["iteration"]) == ("completed", 1)
        assert data["duration_ms"] >= 0
    assert [(d["step_id"], d["node_type"]) for d in completed] == [
        ("start", "trigger"),
        ("fetch", "http"),
        ("tell", "notify"),
    ]
    assert [(d["steps_completed"], d["progress"]) for d in completed] == [
        (1, 33),
        (2, 66),
        (3, 100),
    ]
    assert completed[1]["output"]["body"] == {"name": "Zoë"}
    assert recorder.of("run_completed") == [
        {
            "status": "completed",
            "steps_completed": 3,
            "total_steps": 3,
            "progress": 100,
            "error": None,
        }
    ]


def test_run_workflow_step_started_reports_count_before_the_step(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/user", json={"name": "Zoë"})

    _, recorder = run(workflow(LINEAR.format(url=mock_http.url("/user"))), {"who": "Ann"})

    assert [d["steps_completed"] for d in recorder.of("step_started")] == [0, 1, 2]


def test_run_workflow_step_done_reports_each_result_with_running_count(
    mock_http: MockHttpServer,
) -> None:
    mock_http.route("GET", "/user", json={"name": "Zoë"})

    outcome, recorder = run(workflow(LINEAR.format(url=mock_http.url("/user"))), {"who": "Ann"})

    assert [(r.step_id, count) for r, count in recorder.decided] == [
        ("start", 1),
        ("fetch", 2),
        ("tell", 3),
    ]
    assert [r for r, _ in recorder.decided] == outcome.results
    for result in outcome.results:
        assert result.started_at is not None
        assert result.completed_at is not None
        assert result.started_at <= result.completed_at


def test_run_workflow_condition_true_skips_other_branch_and_counts_six_of_six(
    mock_http: MockHttpServer,
) -> None:
    mock_http.route("GET", "/health", json={"ok": True})

    outcome, recorder = run(health_pipeline(mock_http.url("/health")))

    assert (outcome.status, outcome.steps_completed, outcome.total_steps) == ("completed", 6, 6)
    assert statuses(outcome) == {
        "receive_event": "completed",
        "fetch_health": "completed",
        "route_on_status": "completed",
        "notify_degraded": "skipped",
        "notify_healthy": "completed",
        "finalize_run": "completed",
    }
    assert recorder.step_events()[5:] == [
        ("step_completed", "route_on_status"),
        ("step_skipped", "notify_degraded"),
        ("step_started", "notify_healthy"),
        ("step_completed", "notify_healthy"),
        ("step_started", "finalize_run"),
        ("step_completed", "finalize_run"),
    ]
    assert recorder.of("run_completed")[0]["steps_completed"] == 6


def test_run_workflow_condition_false_skips_true_branch_and_counts_six_of_six(
    mock_http: MockHttpServer,
) -> None:
    mock_http.route("GET", "/health", status=503, json={"ok": False})

    outcome, recorder = run(health_pipeline(mock_http.url("/health")))

    assert (outcome.status, outcome.steps_completed, outcome.total_steps) == ("completed", 6, 6)
    assert statuses(outcome)["notify_healthy"] == "skipped"
    assert statuses(outcome)["notify_degraded"] == "completed"
    assert statuses(outcome)["finalize_run"] == "completed"
    degraded = next(r for r in outcome.results if r.step_id == "notify_degraded")
    assert degraded.output["message"] == "degraded (503)"
    [skipped] = recorder.of("step_skipped")
    assert skipped == {
        "step_id": "notify_healthy",
        "node_type": "notify",
        "status": "skipped",
        "steps_completed": 4,
        "total_steps": 6,
        "progress": 66,
    }


def test_run_workflow_condition_result_recorded_as_output(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/health", status=503)

    outcome, _ = run(health_pipeline(mock_http.url("/health")))

    route = next(r for r in outcome.results if r.step_id == "route_on_status")
    assert route.output == {
        "result": False,
        "next_step": "notify_degraded",
        "condition": "{fetch_health.status_code} == 200",
        "evaluated_to": False,
    }


FORWARD_JUMP = """\
- id: start
  type: trigger
- id: gate
  type: condition
  condition: "{trigger.body.go}"
  on_true: d
  on_false: b
- id: b
  type: notify
  message: b
- id: c
  type: notify
  message: c
- id: d
  type: notify
  message: d
- id: e
  type: notify
  message: e
"""


def test_run_workflow_forward_jump_skips_steps_passed_over() -> None:
    outcome, recorder = run(workflow(FORWARD_JUMP), {"go": True})

    assert statuses(outcome) == {
        "start": "completed",
        "gate": "completed",
        "b": "skipped",
        "c": "skipped",
        "d": "completed",
        "e": "completed",
    }
    assert [d["step_id"] for d in recorder.of("step_skipped")] == ["b", "c"]
    assert (outcome.status, outcome.steps_completed) == ("completed", 6)


def test_run_workflow_jump_to_next_step_skips_only_the_other_branch() -> None:
    outcome, recorder = run(workflow(FORWARD_JUMP), {"go": False})

    assert statuses(outcome) == {
        "start": "completed",
        "gate": "completed",
        "d": "skipped",
        "b": "completed",
        "c": "completed",
        "e": "completed",
    }
    assert [d["step_id"] for d in recorder.of("step_skipped")] == ["d"]


def test_run_workflow_condition_without_targets_continues_in_order() -> None:
    wf = workflow(
        """\
        - id: gate
          type: condition
          condition: "{trigger.body.n} > 1"
        - id: after
          type: notify
          message: after
        """
    )

    outcome, recorder = run(wf, {"n": 0})

    assert statuses(outcome) == {"gate": "completed", "after": "completed"}
    assert recorder.of("step_skipped") == []


def test_run_workflow_condition_with_only_false_target_skips_it_when_true() -> None:
    wf = workflow(
        """\
        - id: gate
          type: condition
          condition: "{trigger.body.ok}"
          on_false: hold
        - id: ship
          type: notify
          message: ship
        - id: hold
          type: notify
          message: hold
        """
    )

    outcome, _ = run(wf, {"ok": True})

    assert statuses(outcome) == {"gate": "completed", "hold": "skipped", "ship": "completed"}


FAILING = """\
- id: start
  type: trigger
- id: fetch
  type: http
  url: {url}
- id: gate
  type: condition
  condition: "{{fetch.status_code}} == 200"
  on_true: tell
- id: tell
  type: notify
  message: fetched
"""


def test_run_workflow_failed_step_fails_run_and_skips_the_rest() -> None:
    with MockHttpServer() as gone:
        url = gone.url("/down")

    outcome, recorder = run(workflow(FAILING.format(url=url)))

    assert outcome.status == "failed"
    assert (outcome.steps_completed, outcome.total_steps) == (4, 4)
    assert statuses(outcome) == {
        "start": "completed",
        "fetch": "failed",
        "gate": "skipped",
        "tell": "skipped",
    }
    assert outcome.error is not None
    assert outcome.error.startswith(f"Step 'fetch' failed: url: GET {url} failed")
    assert recorder.types[-4:] == ["step_failed", "step_skipped", "step_skipped", "run_failed"]
    [failed] = recorder.of("step_failed")
    assert set(failed) == STEP_FIELDS | {"iteration", "error", "error_kind", "duration_ms"}
    assert failed["error_kind"] == "network"
    assert (failed["step_id"], failed["status"]) == ("fetch", "failed")
    assert failed["error"] == outcome.results[1].error
    assert recorder.of("run_failed") == [
        {
            "status": "failed",
            "steps_completed": 4,
            "total_steps": 4,
            "progress": 100,
            "error": outcome.error,
        }
    ]


def test_run_workflow_failed_step_output_is_its_error_and_unreached_steps_say_so() -> None:
    with MockHttpServer() as gone:
        url = gone.url("/down")

    outcome, _ = run(workflow(FAILING.format(url=url)))

    failed, skipped = outcome.results[1], outcome.results[2]
    assert failed.output == {"error": {"message": failed.error, "kind": "network",
                                       "status_code": None, "attempts": 1}}
    assert failed.started_at is not None
    assert failed.completed_at is not None
    assert (skipped.output, skipped.error, skipped.started_at) == ({}, NOT_REACHED, None)


def test_run_workflow_unresolved_reference_error_names_reference_and_field(
    mock_http: MockHttpServer,
) -> None:
    mock_http.route("GET", "/user", json={"name": "Zoë", "id": 42})
    mock_http.route("POST", "/hook")
    wf = workflow(
        f"""\
        - id: fetch
          type: http
          url: {mock_http.url("/user")}
        - id: tell
          type: notify
          channel: webhook
          url: {mock_http.url("/hook")}
          message: "New user {{fetch.body.nmae}}"
        """
    )

    outcome, _ = run(wf)

    assert outcome.status == "failed"
    tell = outcome.results[1]
    assert tell.status == "failed"
    assert tell.error == (
        "message: {fetch.body.nmae} cannot be resolved: "
        "'nmae' is not in fetch.body (it has: name, id)"
    )
    assert outcome.error == f"Step 'tell' failed: {tell.error}"
    assert mock_http.requests_to("/hook") == []


BRANCHES = """\
- id: is_member
  type: condition
  condition: "{trigger.body.member_id} > 0"
  on_true: lookup
  on_false: guest
- id: lookup
  type: notify
  message: member
- id: guest
  type: notify
  message: guest
- id: receipt
  type: notify
  message: "Thanks {RECEIPT}"
"""


def test_run_workflow_reference_to_branch_skipped_step_fails_reader() -> None:
    wf = workflow(BRANCHES.replace("{RECEIPT}", "{lookup.message}"))

    outcome, _ = run(wf, {"member_id": 0})

    assert statuses(outcome) == {
        "is_member": "completed",
        "lookup": "skipped",
        "guest": "completed",
        "receipt": "failed",
    }
    receipt = outcome.results[-1]
    assert receipt.error is not None
    assert receipt.error == (
        "message: {lookup.message} cannot be resolved: step 'lookup' was skipped in this run"
    )
    assert outcome.status == "failed"


def test_run_workflow_reference_to_branch_skipped_step_uses_its_default() -> None:
    wf = workflow(BRANCHES.replace("{RECEIPT}", '{lookup.message ?? \\"guest\\"}'))

    outcome, _ = run(wf, {"member_id": 0})

    assert outcome.status == "completed"
    assert statuses(outcome)["lookup"] == "skipped"
    assert outcome.results[-1].output["message"] == "Thanks guest"


def test_run_workflow_reference_to_branch_taken_ignores_the_default() -> None:
    wf = workflow(BRANCHES.replace("{RECEIPT}", '{lookup.message ?? \\"guest\\"}'))

    outcome, _ = run(wf, {"member_id": 7})

    assert outcome.status == "completed"
    assert outcome.results[-1].output["message"] == "Thanks member"


def test_run_workflow_condition_error_fails_run_and_skips_both_branches() -> None:
    wf = workflow(
        """\
        - id: gate
          type: condition
          condition: "{trigger.body.approved} > 3"
          on_true: ship
          on_false: hold
        - id: ship
          type: notify
          message: ship
        - id: hold
          type: notify
          message: hold
        """
    )

    outcome, _ = run(wf, {"approved": "yes"})

    assert statuses(outcome) == {"gate": "failed", "ship": "skipped", "hold": "skipped"}
    assert outcome.error == (
        "Step 'gate' failed: condition: "
        "'{trigger.body.approved} > 3': cannot order the string 'yes' and the number 3"
    )


def test_run_workflow_values_with_quotes_stay_data_in_condition(mock_http: MockHttpServer) -> None:
    mock_http.route("POST", "/users/mallory/deny")
    wf = workflow(
        f"""\
        - id: gate
          type: condition
          condition: "{{trigger.body.role}} == 'admin'"
          on_true: grant
          on_false: deny
        - id: grant
          type: http
          method: POST
          url: {mock_http.base_url}/users/{{trigger.body.name}}/grant
        - id: deny
          type: http
          method: POST
          url: {mock_http.base_url}/users/{{trigger.body.name}}/deny
        """
    )

    outcome, _ = run(wf, {"role": "guest' or 'a' == 'a", "name": "mallory"})

    assert statuses(outcome) == {"gate": "completed", "grant": "skipped", "deny": "completed"}
    assert [r.path for r in mock_http.requests] == ["/users/mallory/deny"]


def test_run_workflow_webhook_payload_carries_run_id(mock_http: MockHttpServer) -> None:
    mock_http.route("POST", "/hook")
    wf = workflow(
        f"""\
        - id: ping
          type: notify
          channel: webhook
          url: {mock_http.url("/hook")}
          message: hi
        """
    )

    outcome, _ = run(wf, run_id="run-77")

    assert outcome.status == "completed"
    assert mock_http.requests[0].json()["run_id"] == "run-77"


def test_run_workflow_large_output_summarized_in_event_but_kept_whole(
    mock_http: MockHttpServer,
) -> None:
    big = {"rows": ["x" * 100 for _ in range(400)]}
    mock_http.route("GET", "/big", json=big)
    wf = workflow(
        f"""\
        - id: fetch
          type: http
          url: {mock_http.url("/big")}
        - id: count
          type: notify
          message: "{{fetch.body.rows.399}}"
        """
    )

    outcome, recorder = run(wf)

    event_output = recorder.of("step_completed")[0]["output"]
    assert event_output["truncated"] is True
    assert event_output["size"] > EVENT_OUTPUT_LIMIT
    assert len(event_output["preview"]) == EVENT_OUTPUT_LIMIT // 4
    assert event_output["preview"].startswith('{"status_code":200')
    assert outcome.results[0].output["body"] == big
    assert outcome.results[1].output["message"] == "x" * 100


def test_summarize_small_output_passes_through_unchanged() -> None:
    output = {"body": "x" * 100, "n": 30.4}

    assert summarize(output) is output


def test_summarize_output_at_limit_kept_and_past_limit_cut() -> None:
    at_limit = "x" * (EVENT_OUTPUT_LIMIT - 2)  # the JSON quotes make it exactly the limit
    past_limit = at_limit + "x"

    assert summarize(at_limit) == at_limit
    assert summarize(past_limit) == {
        "truncated": True,
        "size": EVENT_OUTPUT_LIMIT + 1,
        "preview": '"' + "x" * (EVENT_OUTPUT_LIMIT // 4 - 1),
    }


def test_step_result_as_dict_uses_api_field_names() -> None:
    result = StepResult("fetch", "http", "failed", {}, "boom", "t0", "t1", iteration=2)

    assert result.as_dict() == {
        "step_id": "fetch",
        "node_type": "http",
        "status": "failed",
        "output_data": {},
        "error_message": "boom",
        "started_at": "t0",
        "completed_at": "t1",
        "iteration": 2,
        "attempts": 1,
    }


@pytest.mark.parametrize(("go", "ran"), [(True, "d"), (False, "b")])
def test_run_workflow_every_step_decided_exactly_once(go: bool, ran: str) -> None:
    outcome, recorder = run(workflow(FORWARD_JUMP), {"go": go})

    decided = [result.step_id for result, _ in recorder.decided]
    assert sorted(decided) == sorted(["start", "gate", "b", "c", "d", "e"])
    assert [count for _, count in recorder.decided] == list(range(1, 7))
    assert statuses(outcome)[ran] == "completed"


def answer_done_on_call(mock: MockHttpServer, path: str, done_on: int | None) -> None:
    """Answer ``path`` with ``pending`` until its call number ``done_on`` (never if None)."""

    def reply(_request: RecordedRequest) -> Reply:
        calls = len(mock.requests_to(path))
        finished = done_on is not None and calls >= done_on
        return json_reply(200, {"status": "done" if finished else "pending", "calls": calls})

    mock.respond_with("GET", path, reply)


def polling(url: str, top: str = "", poll_keys: str = "", check_keys: str = "") -> Workflow:
    """Poll ``url`` until its status is done, then report: a loop made by a back-jump."""
    text = f"name: poller\n{top}steps:\n" + indent(
        dedent(
            f"""\
            - id: start
              type: trigger
            - id: poll
              type: http
              url: {url}
            {poll_keys}
            - id: check
              type: condition
              condition: "{{poll.body.status}} == 'done'"
              on_true: report
              on_false: poll
            {check_keys}
            - id: report
              type: notify
              message: "finished after {{poll.body.calls}} calls"
            """
        ).replace("\n\n", "\n"),
        "  ",
    )
    return parse_workflow(text)


def iterations(recorder: MemoryRecorder, event_type: str, step_id: str) -> list[int]:
    """The iteration numbers of ``step_id``'s events of ``event_type``, in order."""
    return [d["iteration"] for d in recorder.of(event_type) if d["step_id"] == step_id]


def test_run_workflow_loop_runs_until_its_condition_holds(mock_http: MockHttpServer) -> None:
    answer_done_on_call(mock_http, "/job", done_on=3)

    outcome, recorder = run(polling(mock_http.url("/job")))

    assert (outcome.status, outcome.error) == ("completed", None)
    assert len(mock_http.requests_to("/job")) == 3
    assert iterations(recorder, "step_started", "poll") == [1, 2, 3]
    assert iterations(recorder, "step_completed", "poll") == [1, 2, 3]
    assert iterations(recorder, "step_completed", "check") == [1, 2, 3]
    assert iterations(recorder, "step_completed", "report") == [1]
    report = outcome.results[-1]
    assert (report.step_id, report.status) == ("report", "completed")
    assert report.output["message"] == "finished after 3 calls"


def test_run_workflow_loop_counts_each_step_once_in_progress(mock_http: MockHttpServer) -> None:
    answer_done_on_call(mock_http, "/job", done_on=3)

    outcome, recorder = run(polling(mock_http.url("/job")))

    assert (outcome.steps_completed, outcome.total_steps) == (4, 4)
    assert [r.step_id for r in outcome.results] == ["start", "poll", "check", "report"]
    assert next(r for r in outcome.results if r.step_id == "poll").iteration == 3
    assert all(0 <= data.get("progress", 0) <= 100 for _, data in recorder.events)
    assert recorder.of("run_completed")[0]["steps_completed"] == 4


@pytest.mark.parametrize(
    ("top", "poll_keys", "check_keys", "step_id", "limit", "calls"),
    [
        ("", "", "", "poll", 10, 10),
        ("max_iterations: 4\n", "", "", "poll", 4, 4),
        ("max_iterations: 4\n", "  max_iterations: 3", "", "poll", 3, 3),
        ("", "", "  max_iterations: 2", "check", 2, 3),
    ],
    ids=["default", "workflow-limit", "step-limit", "condition-limit"],
)
def test_run_workflow_endless_loop_fails_at_the_limit_naming_step_and_limit(
    mock_http: MockHttpServer,
    top: str,
    poll_keys: str,
    check_keys: str,
    step_id: str,
    limit: int,
    calls: int,
) -> None:
    answer_done_on_call(mock_http, "/job", done_on=None)
    wf = polling(mock_http.url("/job"), top, poll_keys, check_keys)

    outcome, recorder = run(wf)

    message = (
        f"Step '{step_id}' hit its loop limit: it ran {limit} times and max_iterations is {limit}"
    )
    assert (outcome.status, outcome.error) == ("failed", message)
    assert len(mock_http.requests_to("/job")) == calls
    assert max(iterations(recorder, "step_started", step_id)) == limit
    assert statuses(outcome)["report"] == "skipped"
    failed = recorder.of("step_failed")[-1]
    assert (failed["step_id"], failed["error"]) == (step_id, message)
    assert recorder.of("run_failed")[0]["error"] == message


def test_run_workflow_back_jump_clears_skip_marks_of_the_previous_pass(
    mock_http: MockHttpServer,
) -> None:
    mock_http.respond_with(
        "GET", "/count", lambda _r: json_reply(200, {"n": len(mock_http.requests_to("/count"))})
    )
    wf = workflow(
        f"""\
        - id: poll
          type: http
          url: {mock_http.url("/count")}
        - id: gate
          type: condition
          condition: "{{poll.body.n}} < 2"
          on_true: tail
        - id: extra
          type: notify
          message: "extra after {{poll.body.n}}"
        - id: tail
          type: condition
          condition: "{{poll.body.n}} < 2"
          on_true: poll
        """
    )

    outcome, recorder = run(wf)

    # Pass 1 jumps over extra (skipping it); pass 2 falls through to it and runs it.
    assert outcome.status == "completed"
    assert len(mock_http.requests_to("/count")) == 2
    assert [kind for kind, step_id in recorder.step_events() if step_id == "extra"] == [
        "step_skipped",
        "step_started",
        "step_completed",
    ]
    extra = next(r for r in outcome.results if r.step_id == "extra")
    assert (extra.status, extra.iteration) == ("completed", 1)
    assert extra.output["message"] == "extra after 2"


def test_run_workflow_loop_step_reads_its_own_previous_iteration(
    mock_http: MockHttpServer,
) -> None:
    mock_http.respond_with(
        "GET", "/count", lambda r: json_reply(200, {"n": int(r.query["after"][0]) + 1})
    )
    wf = workflow(
        f"""\
        - id: count
          type: http
          url: "{mock_http.url("/count")}?after={{count.body.n ?? 0}}"
        - id: again
          type: condition
          condition: "{{count.body.n}} < 3"
          on_true: count
        """
    )

    outcome, _ = run(wf)

    assert outcome.status == "completed"
    assert [r.query["after"] for r in mock_http.requests_to("/count")] == [["0"], ["1"], ["2"]]
    assert outcome.results[0].output["body"] == {"n": 3}
