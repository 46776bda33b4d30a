"""The runner's failure policy and durability, with the real nodes against a local server.

Retries (attempts, backoff, ``retry.on``), step and workflow timeouts, ``on_error``
routes, and runs that stop early (``suspended``, ``cancelled``) and go on from their
checkpoint: after a long retry wait, a continuation, a crash, a redrive.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from textwrap import dedent, indent
from typing import Any

import pytest

from stepstream import runner
from stepstream.definition import Workflow, parse_workflow
from stepstream.runner import (
    MIN_ATTEMPT_SECONDS,
    NOT_REACHED,
    SLEEP_LIMIT_SECONDS,
    YIELD_MARGIN_SECONDS,
    Checkpoint,
    Resume,
    RunOutcome,
    StepResult,
    run_workflow,
)
from tests.support.servers import MockHttpServer, RecordedRequest, Reply, json_reply

# Retries that wait 10 ms, then 20 ms, ...: fast enough to sleep in a unit test.
FAST = "retry: {attempts: 3, backoff: {initial: 0.01}, jitter: false}"


@dataclass
class MemoryRecorder:
    """Keeps what the runner reports, and the checkpoint it would write with it."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    decided: list[StepResult] = field(default_factory=list)
    snapshot: Callable[[], dict[str, Any]] | None = None

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Keep one event."""
        self.events.append((event_type, dict(data)))

    def step_done(self, result: StepResult, steps_completed: int) -> None:
        """Keep one step's result."""
        self.decided.append(result)

    def track(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        """Keep the runner's checkpoint source, as the stored recorder does."""
        self.snapshot = snapshot

    @property
    def types(self) -> list[str]:
        """The event types in order."""
        return [event_type for event_type, _ in self.events]

    def of(self, event_type: str) -> list[dict[str, Any]]:
        """The data of every event of ``event_type``, in order."""
        return [data for kind, data in self.events if kind == event_type]

    def step_events(self, step_id: str) -> list[str]:
        """The types of ``step_id``'s events, in order."""
        return [kind for kind, data in self.events if data.get("step_id") == step_id]

    def checkpoint(self) -> Checkpoint:
        """The checkpoint as the store would keep it (through its dict form)."""
        assert self.snapshot is not None, "the runner never called track()"
        return Checkpoint.from_dict(self.snapshot())

    def stored(self) -> dict[str, dict[str, Any]]:
        """The step results as the store would keep them: the last of each step."""
        return {result.step_id: result.as_dict() for result in self.decided}


@dataclass
class FakeControl:
    """A ``Control`` whose time left and cancel flag the test sets; waits are real sleeps."""

    left: float | None = None
    cancel: bool = False
    worked: bool = False
    step_allowance: float | None = None
    waits: list[float] = field(default_factory=list)

    def cancelled(self) -> bool:
        """The flag the test set."""
        return self.cancel

    def time_left(self) -> float | None:
        """The time the test gave."""
        return self.left

    def wait(self, seconds: float) -> None:
        """Sleep, and note how long."""
        self.waits.append(seconds)
        time.sleep(seconds)


def workflow(steps: str, top: str = "") -> Workflow:
    """A workflow named ``wf`` with the given YAML ``steps`` list and top-level keys."""
    return parse_workflow(f"name: wf\n{top}steps:\n" + indent(dedent(steps), "  "))


def start(
    wf: Workflow, control: FakeControl | None = None, resume: Resume | None = None,
    body: Any = None,
) -> tuple[RunOutcome, MemoryRecorder]:
    """Run ``wf`` as run ``run-1``, keeping what it reports."""
    recorder = MemoryRecorder()
    trigger = {"body": body or {}, "headers": {}}
    outcome = run_workflow(wf, "run-1", trigger, recorder, control, resume)
    return outcome, recorder


def go_on(
    wf: Workflow, before: MemoryRecorder, reason: str, attempt: int = 2,
    control: FakeControl | None = None,
) -> tuple[RunOutcome, MemoryRecorder]:
    """Take the run up from what ``before`` recorded, as an executor does from the store."""
    resume = Resume(before.checkpoint(), before.stored(), reason, attempt)
    return start(wf, control, resume)


def answer_in_turn(mock: MockHttpServer, path: str, *statuses: int, method: str = "GET") -> None:
    """Answer ``path`` with each of ``statuses`` in turn, then the last one for good."""
    queue = list(statuses)

    def answer(_request: RecordedRequest) -> Reply:
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        return json_reply(status, {"status": status})

    mock.respond_with(method, path, answer)


def keys(mock: MockHttpServer, path: str) -> list[str]:
    """The Idempotency-Key of each request to ``path``, in order."""
    return [request.headers["idempotency-key"] for request in mock.requests_to(path)]


def statuses(outcome: RunOutcome) -> dict[str, str]:
    """Each step's final status by step id."""
    return {result.step_id: result.status for result in outcome.results}


def result_of(outcome: RunOutcome, step_id: str) -> StepResult:
    """The final result of ``step_id``."""
    return next(result for result in outcome.results if result.step_id == step_id)


def fetch_then_tell(url: str, fetch_keys: str = "", top: str = "") -> Workflow:
    """Steps ``start`` (trigger), ``fetch`` (http ``url``, ``fetch_keys``), ``tell`` (notify)."""
    text = dedent(
        """\
        - id: start
          type: trigger
        - id: fetch
          type: http
          url: {url}
        {keys}
        - id: tell
          type: notify
          message: "got {{fetch.status_code}}"
        """
    ).format(url=url, keys=indent(dedent(fetch_keys), "  ").rstrip())
    return workflow(text.replace("\n\n", "\n"), top)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 at a port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone"


def test_checkpoint_round_trips_through_its_dict_and_ignores_unknown_keys() -> None:
    checkpoint = Checkpoint(3, {"fetch": 2}, ["skipped_one"], True, 2, 10.5, 20.5, 15.0)

    data = {**checkpoint.as_dict(), "written_by": "a later version"}

    assert Checkpoint.from_dict(data) == checkpoint
    assert Checkpoint.from_dict({}) == Checkpoint()


# -- retries --------------------------------------------------------------------------


def test_retry_until_success_reports_each_retry_and_completes(mock_http: MockHttpServer) -> None:
    answer_in_turn(mock_http, "/flaky", 503, 502, 200)

    outcome, recorder = start(fetch_then_tell(mock_http.url("/flaky"), FAST))

    assert outcome.status == "completed"
    assert recorder.step_events("fetch") == [
        "step_started", "step_retrying", "step_started", "step_retrying", "step_started",
        "step_completed",
    ]
    retrying = recorder.of("step_retrying")
    assert [(r["attempt"], r["max_attempts"], r["status_code"]) for r in retrying] == [
        (1, 3, 503), (2, 3, 502)]
    assert [r["delay_seconds"] for r in retrying] == [0.01, 0.02]
    assert {r["error_kind"] for r in retrying} == {"http_status"}
    started = [d for d in recorder.of("step_started") if d["step_id"] == "fetch"]
    assert [d.get("attempt") for d in started] == [None, 2, 3]
    completed = recorder.of("step_completed")[1]
    assert (completed["step_id"], completed["attempts"], completed["iteration"]) == ("fetch", 3, 1)
    fetch = result_of(outcome, "fetch")
    assert (fetch.attempts, fetch.iteration, fetch.output["status_code"]) == (3, 1, 200)
    assert result_of(outcome, "tell").output["message"] == "got 200"


def test_retry_attempts_of_one_execution_share_its_idempotency_key(
    mock_http: MockHttpServer,
) -> None:
    answer_in_turn(mock_http, "/flaky", 500, 500, 200)

    start(fetch_then_tell(mock_http.url("/flaky"), FAST))

    assert keys(mock_http, "/flaky") == ["run-1/fetch/1"] * 3


def test_retry_waits_the_backoff_between_attempts(mock_http: MockHttpServer) -> None:
    answer_in_turn(mock_http, "/flaky", 500, 500, 200)
    control = FakeControl()

    start(fetch_then_tell(mock_http.url("/flaky"), FAST), control)

    assert control.waits == [0.01, 0.02]


def test_retry_exhausted_fails_the_step_with_kind_and_attempts(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/down", status=503, json={"error": "maintenance"})

    outcome, recorder = start(fetch_then_tell(mock_http.url("/down"), FAST))

    assert len(mock_http.requests_to("/down")) == 3
    assert recorder.types.count("step_retrying") == 2
    failed = recorder.of("step_failed")[0]
    assert (failed["step_id"], failed["error_kind"]) == ("fetch", "http_status")
    assert failed["attempts"] == 3
    assert failed["error"] == f"url: GET {mock_http.url('/down')} answered 503"
    fetch = result_of(outcome, "fetch")
    assert (fetch.status, fetch.attempts) == ("failed", 3)
    assert fetch.output["error"] == {"message": failed["error"], "kind": "http_status",
                                     "status_code": 503, "attempts": 3}
    assert fetch.output["body"] == {"error": "maintenance"}  # what it got stays readable
    assert (outcome.status, outcome.error) == ("failed", f"Step 'fetch' failed: {failed['error']}")
    assert statuses(outcome)["tell"] == "skipped"


def test_retry_network_failure_is_retried_by_default() -> None:
    outcome, recorder = start(fetch_then_tell(closed_port_url(), FAST))

    assert recorder.types.count("step_retrying") == 2
    assert {r["error_kind"] for r in recorder.of("step_retrying")} == {"network"}
    assert recorder.of("step_failed")[0]["error_kind"] == "network"
    assert result_of(outcome, "fetch").attempts == 3


def test_retry_template_error_is_never_retried(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/x")
    wf = fetch_then_tell(mock_http.url("/x") + "?id={trigger.body.missing}", FAST)

    outcome, recorder = start(wf)

    assert mock_http.requests == []
    assert "step_retrying" not in recorder.types
    failed = recorder.of("step_failed")[0]
    assert failed["error_kind"] == "template"
    assert "attempts" not in failed  # one attempt: the field is left out
    assert result_of(outcome, "fetch").output["error"]["attempts"] == 1


def test_retry_404_is_not_retried_by_default(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/missing", status=404)

    outcome, recorder = start(fetch_then_tell(mock_http.url("/missing"), FAST))

    assert len(mock_http.requests_to("/missing")) == 1
    assert "step_retrying" not in recorder.types
    assert result_of(outcome, "fetch").output["error"]["status_code"] == 404


def test_retry_on_a_status_list_retries_those_statuses(mock_http: MockHttpServer) -> None:
    answer_in_turn(mock_http, "/eventually", 404, 404, 200)
    retry = "retry: {attempts: 4, backoff: {initial: 0.01}, jitter: false, on: [404]}"

    outcome, _ = start(fetch_then_tell(mock_http.url("/eventually"), retry))

    assert outcome.status == "completed"
    assert len(mock_http.requests_to("/eventually")) == 3


def test_retry_on_a_status_list_replaces_the_default_kinds(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/down", status=503)
    retry = "retry: {attempts: 4, backoff: {initial: 0.01}, jitter: false, on: [404]}"

    outcome, recorder = start(fetch_then_tell(mock_http.url("/down"), retry))

    assert len(mock_http.requests_to("/down")) == 1
    assert "step_retrying" not in recorder.types
    assert outcome.status == "failed"


def test_retry_accepted_status_completes_without_retry(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/missing", status=404, json={"found": False})
    keys_yaml = f"{FAST}\naccept_status: [404]"

    outcome, _ = start(fetch_then_tell(mock_http.url("/missing"), keys_yaml))

    assert outcome.status == "completed"
    assert result_of(outcome, "tell").output["message"] == "got 404"


# -- timeouts -------------------------------------------------------------------------


def test_step_timeout_cuts_retries_whose_backoff_would_cross_it(mock_http: MockHttpServer) -> None:
    """Backoffs 0.2 s, 0.6 s, 1.8 s under a 2 s timeout: the third would cross it."""
    mock_http.route("GET", "/down", status=503)
    keys_yaml = ("timeout: 2\n"
                 "retry: {attempts: 10, backoff: {initial: 0.2, multiplier: 3}, jitter: false}")
    control = FakeControl()

    began = time.monotonic()
    outcome, recorder = start(fetch_then_tell(mock_http.url("/down"), keys_yaml), control)
    took = time.monotonic() - began

    assert len(mock_http.requests_to("/down")) == 3
    assert control.waits == pytest.approx([0.2, 0.6])
    assert result_of(outcome, "fetch").attempts == 3
    assert recorder.of("step_failed")[0]["error_kind"] == "http_status"
    assert took < 1.8  # it gave up at once rather than waiting past its deadline


def test_step_timeout_slow_server_fails_the_step_at_its_deadline(
    mock_http: MockHttpServer,
) -> None:
    mock_http.route("GET", "/slow", json={}, delay=10)
    keys_yaml = "timeout: 0.5\nretry: {attempts: 5, backoff: {initial: 0.01}, jitter: false}"

    began = time.monotonic()
    outcome, recorder = start(fetch_then_tell(mock_http.url("/slow"), keys_yaml))
    took = time.monotonic() - began

    assert 0.4 <= took < 2.0
    failed = recorder.of("step_failed")[0]
    assert (failed["step_id"], failed["error_kind"]) == ("fetch", "timeout")
    assert len(mock_http.requests_to("/slow")) == 1  # no time was left for another try
    assert outcome.status == "failed"


def test_workflow_timeout_caps_a_step_with_a_longer_timeout(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/slow", json={}, delay=10)

    began = time.monotonic()
    outcome, recorder = start(
        fetch_then_tell(mock_http.url("/slow"), "timeout: 60", top="timeout: 0.5\n"))
    took = time.monotonic() - began

    assert 0.4 <= took < 2.0
    assert recorder.of("step_failed")[0]["error_kind"] == "timeout"
    assert outcome.status == "failed"


def test_workflow_timeout_fails_the_run_before_its_next_step(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/slow", json={}, delay=10)
    keys_yaml = "on_error: continue"

    outcome, recorder = start(
        fetch_then_tell(mock_http.url("/slow"), keys_yaml, top="timeout: 0.5\n"))

    assert (outcome.status, outcome.error) == ("failed", "the run timed out: it may take 0.5 s")
    assert recorder.types[-1] == "run_failed"
    assert "tell" not in [d["step_id"] for d in recorder.of("step_started")]
    tell = result_of(outcome, "tell")
    assert (tell.status, tell.error) == ("skipped", NOT_REACHED)


@dataclass
class StillClock:
    """The runner's ``time`` with a clock that moves only by the waits it is told of."""

    now: float = field(default_factory=time.time)

    def time(self) -> float:
        """The clock's time: still while a step runs."""
        return self.now

    def perf_counter(self) -> float:
        """Real: durations are measured as usual."""
        return time.perf_counter()

    def wait(self, seconds: float) -> None:
        """Move the clock on by ``seconds``, at once."""
        self.now += seconds


def test_retry_is_not_started_with_less_than_its_minimum_time_left(
    mock_http: MockHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backoff that ends within MIN_ATTEMPT_SECONDS of the deadline: the 500 stands.

    Given a 1 s timeout, a clock that stands still while the step runs, and a backoff
    that would leave half of MIN_ATTEMPT_SECONDS, a retry would start with no time to
    run and fail as a timeout: none is made.
    """
    clock = StillClock()
    monkeypatch.setattr(runner, "time", clock)
    mock_http.route("GET", "/down", status=500, json={"why": "boom"})
    backoff = 1 - MIN_ATTEMPT_SECONDS / 2
    keys_yaml = (f"timeout: 1\n"
                 f"retry: {{attempts: 3, backoff: {{initial: {backoff}}}, jitter: false}}")
    control = FakeControl()
    control.wait = clock.wait  # type: ignore[method-assign]

    outcome, recorder = start(fetch_then_tell(mock_http.url("/down"), keys_yaml), control)

    assert len(mock_http.requests_to("/down")) == 1
    assert "step_retrying" not in recorder.types
    assert recorder.of("step_failed")[0]["error_kind"] == "http_status"
    fetch = result_of(outcome, "fetch")
    assert (fetch.status, fetch.attempts) == ("failed", 1)
    assert fetch.output["body"] == {"why": "boom"}


def test_retry_wait_that_overruns_the_step_deadline_keeps_the_last_real_failure(
    mock_http: MockHttpServer,
) -> None:
    """A wait that ends past the deadline (a late wake-up) makes no attempt.

    The step fails with the 500 it got, not with the timeout of an attempt that
    never had time to run.
    """
    mock_http.route("GET", "/down", status=500, json={"why": "boom"})
    keys_yaml = "timeout: 0.6\nretry: {attempts: 3, backoff: {initial: 0.2}, jitter: false}"
    control = FakeControl()
    control.wait = lambda seconds: time.sleep(seconds + 0.5)  # type: ignore[method-assign]

    outcome, recorder = start(fetch_then_tell(mock_http.url("/down"), keys_yaml), control)

    assert len(mock_http.requests_to("/down")) == 1
    assert recorder.of("step_failed")[0]["error_kind"] == "http_status"
    fetch = result_of(outcome, "fetch")
    assert (fetch.status, fetch.attempts) == ("failed", 1)
    assert fetch.error == f"url: GET {mock_http.url('/down')} answered 500"
    assert fetch.output["body"] == {"why": "boom"}


# -- on_error -------------------------------------------------------------------------


def test_on_error_continue_runs_the_next_step_which_reads_the_error(
    mock_http: MockHttpServer,
) -> None:
    mock_http.route("GET", "/down", status=500)
    wf = workflow(
        f"""\
        - id: fetch
          type: http
          url: {mock_http.url("/down")}
          on_error: continue
        - id: tell
          type: notify
          message: "{{fetch.error.kind}} {{fetch.error.status_code}} {{fetch.status_code}}"
        """
    )

    outcome, recorder = start(wf)

    assert (outcome.status, outcome.error) == ("completed", None)
    assert statuses(outcome) == {"fetch": "failed", "tell": "completed"}
    assert result_of(outcome, "tell").output["message"] == "http_status 500 500"
    assert recorder.types[-1] == "run_completed"


def test_on_error_goto_forward_skips_the_steps_between_and_reads_the_failure(
    mock_http: MockHttpServer,
) -> None:
    mock_http.route("GET", "/down", status=503)
    mock_http.route("POST", "/use")
    wf = workflow(
        f"""\
        - id: start
          type: trigger
        - id: failed
          type: http
          url: {mock_http.url("/down")}
          on_error: {{goto: recover}}
        - id: use
          type: http
          method: POST
          url: {mock_http.url("/use")}
        - id: recover
          type: notify
          message: "{{failed.error.message}} ({{failed.status_code}})"
        """
    )

    outcome, recorder = start(wf)

    assert outcome.status == "completed"
    assert statuses(outcome) == {"start": "completed", "failed": "failed", "use": "skipped",
                                 "recover": "completed"}
    assert mock_http.requests_to("/use") == []
    assert result_of(outcome, "recover").output["message"] == (
        f"url: GET {mock_http.url('/down')} answered 503 (503)")
    assert recorder.step_events("use") == ["step_skipped"]
    assert (outcome.steps_completed, outcome.total_steps) == (4, 4)


def test_on_error_goto_backwards_loops_until_max_iterations(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/down", status=500)
    wf = workflow(
        f"""\
        - id: start
          type: trigger
        - id: prepare
          type: notify
          message: prepare
        - id: fetch
          type: http
          url: {mock_http.url("/down")}
          on_error: {{goto: prepare}}
        """,
        top="max_iterations: 3\n",
    )

    outcome, recorder = start(wf)

    message = "Step 'prepare' hit its loop limit: it ran 3 times and max_iterations is 3"
    assert (outcome.status, outcome.error) == ("failed", message)
    assert keys(mock_http, "/down") == ["run-1/fetch/1", "run-1/fetch/2", "run-1/fetch/3"]
    assert [d["iteration"] for d in recorder.of("step_failed") if d["step_id"] == "fetch"] == [
        1, 2, 3]


def test_on_error_goto_backwards_goes_on_once_the_step_succeeds(
    mock_http: MockHttpServer,
) -> None:
    answer_in_turn(mock_http, "/flaky", 500, 200)
    wf = workflow(
        f"""\
        - id: prepare
          type: notify
          message: 'try after {{fetch.error.kind ?? "nothing"}}'
        - id: fetch
          type: http
          url: {mock_http.url("/flaky")}
          on_error: {{goto: prepare}}
        - id: done
          type: notify
          message: done
        """
    )

    outcome, _ = start(wf)

    assert outcome.status == "completed"
    assert result_of(outcome, "prepare").output["message"] == "try after http_status"
    assert (result_of(outcome, "fetch").status, result_of(outcome, "fetch").iteration) == (
        "completed", 2)
    assert statuses(outcome)["done"] == "completed"


# -- suspending for a long retry wait ---------------------------------------------------


LONG_WAIT = "retry: {attempts: 3, backoff: {initial: 60}, jitter: false}"


def test_long_backoff_suspends_the_run_until_the_retry_is_due(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/down", status=503)

    before = time.time()
    outcome, recorder = start(fetch_then_tell(mock_http.url("/down"), LONG_WAIT))

    assert (outcome.status, outcome.reason) == ("suspended", "retry_wait")
    assert outcome.wake_at == pytest.approx(before + 60, abs=2)
    assert recorder.types == ["run_started", "step_started", "step_completed", "step_started",
                              "step_retrying"]
    assert recorder.of("step_retrying")[0]["delay_seconds"] == 60
    checkpoint = recorder.checkpoint()
    assert (checkpoint.index, checkpoint.inflight, checkpoint.attempt) == (1, True, 2)
    assert checkpoint.wake_at == outcome.wake_at


def test_short_backoff_suspends_when_the_invocation_has_no_time_for_it(
    mock_http: MockHttpServer,
) -> None:
    control = FakeControl(left=1000)

    def answer(_request: RecordedRequest) -> Reply:
        control.left = YIELD_MARGIN_SECONDS  # the invocation's time ran low meanwhile
        return json_reply(503, {})

    mock_http.respond_with("GET", "/down", answer)

    outcome, _ = start(fetch_then_tell(mock_http.url("/down"), FAST), control)

    assert (outcome.status, outcome.reason) == ("suspended", "retry_wait")
    assert control.waits == []
    assert outcome.wake_at is not None and outcome.wake_at - time.time() < SLEEP_LIMIT_SECONDS


def test_resume_after_retry_wait_finishes_with_the_same_iteration_and_next_attempt(
    mock_http: MockHttpServer,
) -> None:
    answer_in_turn(mock_http, "/flaky", 503, 200)
    wf = fetch_then_tell(mock_http.url("/flaky"), LONG_WAIT)
    _, first = start(wf)

    outcome, recorder = go_on(wf, first, "retry_wait")

    assert outcome.status == "completed"
    resumed = recorder.events[0]
    assert resumed[0] == "run_resumed"
    assert (resumed[1]["reason"], resumed[1]["attempt"]) == ("retry_wait", 2)
    assert resumed[1]["steps_completed"] == 1  # the trigger step, recorded before
    assert "start" not in [d["step_id"] for d in recorder.of("step_started")]
    started = recorder.of("step_started")[0]
    assert (started["step_id"], started["iteration"], started["attempt"]) == ("fetch", 1, 2)
    fetch = result_of(outcome, "fetch")
    assert (fetch.status, fetch.iteration, fetch.attempts) == ("completed", 1, 2)
    assert keys(mock_http, "/flaky") == ["run-1/fetch/1", "run-1/fetch/1"]
    assert (outcome.steps_completed, outcome.total_steps) == (3, 3)


def test_resume_after_retry_wait_keeps_the_step_deadline(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/down", status=503)
    keys_yaml = "timeout: 120\nretry: {attempts: 3, backoff: {initial: 30}, jitter: false}"
    wf = fetch_then_tell(mock_http.url("/down"), keys_yaml)
    _, first = start(wf)
    deadline = first.checkpoint().step_deadline

    _, second = go_on(wf, first, "retry_wait")

    assert deadline is not None
    assert second.checkpoint().step_deadline == deadline


def test_retry_that_would_wait_in_the_queue_needs_slack_before_the_deadline(
    mock_http: MockHttpServer,
) -> None:
    """No retry is planned in the queue that would leave its attempt only the minimum time.

    A queued wait ends later than asked: delays are whole seconds, delivery takes a while.
    Given a 6 s timeout and a 5.2 s backoff (longer than the runner sleeps), the 503
    stands at once instead of a retry that could only time out after the queue.
    """
    mock_http.route("GET", "/down", status=503, json={"why": "down"})
    keys_yaml = "timeout: 6\nretry: {attempts: 2, backoff: {initial: 5.2}, jitter: false}"

    outcome, recorder = start(fetch_then_tell(mock_http.url("/down"), keys_yaml))

    assert outcome.status == "failed"
    assert "step_retrying" not in recorder.types
    fetch = result_of(outcome, "fetch")
    assert (fetch.attempts, fetch.output["error"]["status_code"]) == (1, 503)
    assert 6 - 5.2 < runner.QUEUE_WAIT_SLACK_SECONDS + MIN_ATTEMPT_SECONDS


def test_resume_after_a_queued_wait_past_the_deadline_fails_with_the_saved_failure(
    mock_http: MockHttpServer,
) -> None:
    """A run that comes back from the queue too late to retry makes no attempt.

    Its step fails with the failure it waited after (the 503, its body, attempt 1),
    kept in the checkpoint, not with the timeout of an attempt that never ran.
    """
    mock_http.route("GET", "/down", status=503, json={"why": "down"})
    keys_yaml = "timeout: 120\nretry: {attempts: 3, backoff: {initial: 30}, jitter: false}"
    wf = fetch_then_tell(mock_http.url("/down"), keys_yaml)
    first_outcome, first = start(wf)
    assert first_outcome.reason == "retry_wait"
    checkpoint = first.checkpoint()
    checkpoint.step_deadline = time.time() - 1  # the message came back late
    resume = Resume(checkpoint, first.stored(), "retry_wait", 2)

    outcome, recorder = start(wf, None, resume)

    assert len(mock_http.requests_to("/down")) == 1
    assert "step_started" not in recorder.types
    fetch = result_of(outcome, "fetch")
    assert (fetch.status, fetch.attempts) == ("failed", 1)
    assert fetch.error == f"url: GET {mock_http.url('/down')} answered 503"
    assert fetch.output["body"] == {"why": "down"}
    assert fetch.output["error"]["status_code"] == 503
    assert recorder.of("step_failed")[0]["error_kind"] == "http_status"


class ExecutorKilled(BaseException):
    """The executor's process dies: nothing in the runner handles it."""


def test_crash_during_a_short_retry_wait_makes_no_attempt_twice(mock_http: MockHttpServer) -> None:
    """With attempts: 2, an executor killed in the wait leaves only attempt 2 to make.

    Given what the store holds once step_retrying is written, when the executor dies
    in the wait and another takes the run up, then two requests were made in all and
    attempt 1 was announced as retried once.
    """
    mock_http.route("GET", "/down", status=503)
    wf = fetch_then_tell(mock_http.url("/down"),
                         "retry: {attempts: 2, backoff: {initial: 0.01}, jitter: false}")
    first = MemoryRecorder()
    written: list[Resume] = []
    emit = first.emit

    def emit_then_die(event_type: str, data: dict[str, Any]) -> None:
        emit(event_type, data)
        if event_type == "step_retrying":
            written.append(Resume(first.checkpoint(), first.stored(), "recovered", 2))
            raise ExecutorKilled

    first.emit = emit_then_die  # type: ignore[method-assign]
    with pytest.raises(ExecutorKilled):
        run_workflow(wf, "run-1", {"body": {}, "headers": {}}, first)
    assert written[0].checkpoint.attempt == 2

    outcome, after = start(wf, resume=written[0])

    assert len(mock_http.requests_to("/down")) == 2
    assert [d["attempt"] for d in first.of("step_retrying") + after.of("step_retrying")] == [1]
    started = [d.get("attempt", 1) for d in after.of("step_started") if d["step_id"] == "fetch"]
    assert started == [2]
    fetch = result_of(outcome, "fetch")
    assert (fetch.status, fetch.attempts) == ("failed", 2)


# -- handing on for lack of time ------------------------------------------------------


def test_little_time_left_hands_the_run_on_only_after_a_step_ran() -> None:
    wf = workflow(
        """\
        - id: start
          type: trigger
        - id: tell
          type: notify
          message: hi
        """
    )
    control = FakeControl(left=0.5)

    outcome, recorder = start(wf, control)

    assert (outcome.status, outcome.reason, outcome.wake_at) == ("suspended", "continuation", None)
    assert control.worked is True
    assert [result.step_id for result in recorder.decided] == ["start"]
    assert recorder.types == ["run_started", "step_started", "step_completed"]


def test_continuation_resumed_with_time_finishes_the_run() -> None:
    wf = workflow(
        """\
        - id: start
          type: trigger
        - id: tell
          type: notify
          message: "{trigger.body.who}"
        """
    )
    _, first = start(wf, FakeControl(left=0.5), body={"who": "Ann"})

    resume = Resume(first.checkpoint(), first.stored(), "continuation", 2)
    outcome, recorder = start(wf, FakeControl(), resume, body={"who": "Ann"})

    assert outcome.status == "completed"
    assert recorder.types == ["run_resumed", "step_started", "step_completed", "run_completed"]
    assert recorder.of("run_resumed")[0]["reason"] == "continuation"
    assert result_of(outcome, "tell").output["message"] == "Ann"


def test_step_allowance_lets_a_blocking_step_start_while_the_margin_is_left(
    mock_http: MockHttpServer,
) -> None:
    """A request's budget (allowance 0) goes on until only the margin is left."""
    mock_http.route("GET", "/x", json={})
    wf = fetch_then_tell(mock_http.url("/x"))

    waits_for_the_step, _ = start(wf, FakeControl(left=YIELD_MARGIN_SECONDS + 1))
    goes_on, _ = start(wf, FakeControl(left=YIELD_MARGIN_SECONDS + 1, step_allowance=0))

    assert (waits_for_the_step.status, waits_for_the_step.reason) == ("suspended", "continuation")
    assert goes_on.status == "completed"


def test_a_fresh_invocation_with_little_time_still_runs_one_step() -> None:
    """The first step of a turn always runs: a run is never handed on without progress."""
    wf = workflow("- id: start\n  type: trigger\n- id: tell\n  type: notify\n  message: hi\n")
    _, first = start(wf, FakeControl(left=0.5))

    outcome, _ = go_on(wf, first, "continuation", control=FakeControl(left=0.5))

    assert outcome.status == "completed"


# -- cancelling ---------------------------------------------------------------------


def test_cancel_before_a_step_ends_the_run_cancelled_with_the_rest_not_reached(
    mock_http: MockHttpServer,
) -> None:
    control = FakeControl()

    def answer(_request: RecordedRequest) -> Reply:
        control.cancel = True  # asked while the step runs: it finishes, the next never starts
        return json_reply(200, {})

    mock_http.respond_with("GET", "/work", answer)

    outcome, recorder = start(fetch_then_tell(mock_http.url("/work")), control)

    assert (outcome.status, outcome.error) == ("cancelled", None)
    assert recorder.types[-1] == "run_cancelled"
    assert recorder.of("run_cancelled")[0]["status"] == "cancelled"
    assert statuses(outcome) == {"start": "completed", "fetch": "completed", "tell": "skipped"}
    assert result_of(outcome, "tell").error == NOT_REACHED
    assert "tell" not in [d["step_id"] for d in recorder.of("step_started")]


def test_cancel_before_the_first_step_runs_nothing() -> None:
    wf = workflow("- id: start\n  type: trigger\n- id: tell\n  type: notify\n  message: hi\n")

    outcome, recorder = start(wf, FakeControl(cancel=True))

    assert outcome.status == "cancelled"
    assert recorder.types == ["run_started", "step_skipped", "step_skipped", "run_cancelled"]
    assert {result.error for result in outcome.results} == {NOT_REACHED}


def test_cancel_during_a_retry_wait_makes_no_further_attempt(mock_http: MockHttpServer) -> None:
    mock_http.route("GET", "/down", status=503)
    control = FakeControl()
    control.wait = lambda seconds: setattr(control, "cancel", True)  # type: ignore[method-assign]

    outcome, _ = start(fetch_then_tell(mock_http.url("/down"), FAST), control)

    assert outcome.status == "cancelled"
    assert len(mock_http.requests_to("/down")) == 1


def test_cancel_during_a_retry_wait_reports_no_attempt_it_does_not_make(
    mock_http: MockHttpServer,
) -> None:
    mock_http.route("GET", "/down", status=503)
    control = FakeControl()
    control.wait = lambda seconds: setattr(control, "cancel", True)  # type: ignore[method-assign]

    _, recorder = start(fetch_then_tell(mock_http.url("/down"), FAST), control)

    started = [d.get("attempt", 1) for d in recorder.of("step_started") if d["step_id"] == "fetch"]
    assert started == [1]


def test_cancel_during_the_last_step_ends_the_run_cancelled(mock_http: MockHttpServer) -> None:
    """A cancel asked while the last step runs is kept: the run ends cancelled, not completed."""
    control = FakeControl()

    def answer(_request: RecordedRequest) -> Reply:
        control.cancel = True
        return json_reply(200, {"ok": True})

    mock_http.respond_with("GET", "/last", answer)
    wf = workflow(f"- id: start\n  type: trigger\n- id: fetch\n  type: http\n"
                  f"  url: {mock_http.url('/last')}\n")

    outcome, recorder = start(wf, control)

    assert (outcome.status, outcome.error) == ("cancelled", None)
    assert recorder.types[-2:] == ["step_completed", "run_cancelled"]
    assert statuses(outcome) == {"start": "completed", "fetch": "completed"}


def test_cancel_during_a_retry_wait_ends_the_step_failed_with_its_last_failure(
    mock_http: MockHttpServer,
) -> None:
    """The step ran, and failed, before the cancel: it ends failed with that failure."""
    mock_http.route("GET", "/down", status=503, json={"error": "maintenance"})
    control = FakeControl()
    control.wait = lambda seconds: setattr(control, "cancel", True)  # type: ignore[method-assign]

    outcome, recorder = start(fetch_then_tell(mock_http.url("/down"), FAST), control)

    assert outcome.status == "cancelled"
    assert recorder.step_events("fetch") == ["step_started", "step_retrying", "step_failed"]
    fetch = result_of(outcome, "fetch")
    assert (fetch.status, fetch.attempts, fetch.iteration) == ("failed", 1, 1)
    assert fetch.error == f"url: GET {mock_http.url('/down')} answered 503"
    assert fetch.output["error"]["kind"] == "http_status"
    assert fetch.output["body"] == {"error": "maintenance"}
    assert result_of(outcome, "tell").error == NOT_REACHED


# -- taking a run up again ----------------------------------------------------------


def test_resume_from_the_checkpoint_of_a_step_result_goes_on_after_that_step() -> None:
    wf = workflow(
        """\
        - id: start
          type: trigger
        - id: tell
          type: notify
          message: once
        - id: done
          type: notify
          message: done
        """,
        top="max_iterations: 1\n",
    )
    recorder = MemoryRecorder()
    written: list[Resume] = []
    emit = recorder.emit

    def emit_and_write(event_type: str, data: dict[str, Any]) -> None:
        emit(event_type, data)
        if (event_type, data.get("step_id")) == ("step_completed", "tell"):
            written.append(Resume(recorder.checkpoint(), recorder.stored(), "recovered", 2))

    recorder.emit = emit_and_write  # type: ignore[method-assign]
    run_workflow(wf, "run-1", {"body": {}, "headers": {}}, recorder)

    outcome, after = start(wf, resume=written[0])

    assert (outcome.status, outcome.error) == ("completed", None)
    assert [d["step_id"] for d in after.of("step_started")] == ["done"]


def test_resume_after_a_crash_reruns_the_inflight_step_as_the_same_iteration(
    mock_http: MockHttpServer,
) -> None:
    mock_http.route("GET", "/first", json={"n": 1})
    recorder = MemoryRecorder()
    at_crash: list[Resume] = []

    def answer_and_crash(_request: RecordedRequest) -> Reply:
        # What the store holds while the step is in flight, when the executor dies.
        at_crash.append(Resume(recorder.checkpoint(), recorder.stored(), "recovered", 2))
        return json_reply(200, {"ok": True})

    mock_http.respond_with("POST", "/effect", answer_and_crash)
    wf = workflow(
        f"""\
        - id: start
          type: trigger
        - id: first
          type: http
          url: {mock_http.url("/first")}
        - id: effect
          type: http
          method: POST
          url: {mock_http.url("/effect")}
        - id: tell
          type: notify
          message: "{{first.body.n}}"
        """
    )
    run_workflow(wf, "run-1", {"body": {}, "headers": {}}, recorder)
    resume = at_crash[0]
    assert (resume.checkpoint.index, resume.checkpoint.inflight) == (2, True)
    assert set(resume.results) == {"start", "first"}

    outcome, after = start(wf, resume=resume)

    assert outcome.status == "completed"
    assert keys(mock_http, "/effect") == ["run-1/effect/1", "run-1/effect/1"]
    assert len(mock_http.requests_to("/first")) == 1  # recorded completed: never again
    assert [d["step_id"] for d in after.of("step_started")] == ["effect", "tell"]
    assert result_of(outcome, "effect").iteration == 1
    assert result_of(outcome, "tell").output["message"] == "1"  # read from the stored output
    assert (outcome.steps_completed, outcome.total_steps) == (4, 4)


def test_redrive_reruns_the_failed_step_and_goes_on(mock_http: MockHttpServer) -> None:
    answer_in_turn(mock_http, "/down", 500, 200)
    wf = fetch_then_tell(mock_http.url("/down"))
    failed, first = start(wf)
    assert failed.status == "failed"

    outcome, recorder = go_on(wf, first, "redrive")

    assert (outcome.status, outcome.error) == ("completed", None)
    assert recorder.of("run_resumed")[0]["reason"] == "redrive"
    assert [d["step_id"] for d in recorder.of("step_started")] == ["fetch", "tell"]
    assert statuses(outcome) == {"start": "completed", "fetch": "completed", "tell": "completed"}
    assert result_of(outcome, "tell").output["message"] == "got 200"
    assert (outcome.steps_completed, outcome.total_steps) == (3, 3)


def test_redrive_of_a_timed_out_run_gets_the_whole_timeout_again(
    mock_http: MockHttpServer,
) -> None:
    calls: list[float] = []

    def slow_then_fast(_request: RecordedRequest) -> Reply:
        calls.append(time.time())
        return Reply(200, b"{}", {"Content-Type": "application/json"}, delay=10 if len(calls) == 1
                     else 0)

    mock_http.respond_with("GET", "/slow", slow_then_fast)
    wf = fetch_then_tell(mock_http.url("/slow"), top="timeout: 0.5\n")
    failed, first = start(wf)
    assert failed.status == "failed"
    time.sleep(0.1)

    outcome, _ = go_on(wf, first, "redrive")

    assert outcome.status == "completed"
    assert len(calls) == 2


def woken_after_the_run_timed_out(
    wf: Workflow,
) -> tuple[RunOutcome, dict[str, dict[str, Any]], MemoryRecorder]:
    """Run ``wf`` into a queued retry wait, then take it up after the run's deadline.

    Returns the outcome of that second turn, the step results the store then holds
    (both turns'), and the second turn's recorder.
    """
    waiting, first = start(wf)
    assert (waiting.status, waiting.reason) == ("suspended", "retry_wait")
    checkpoint = first.checkpoint()
    # The wake-up came after the workflow's timeout (a long wait, a slow queue).
    checkpoint.run_deadline = checkpoint.step_deadline = time.time() - 1
    outcome, second = start(wf, resume=Resume(checkpoint, first.stored(), "retry_wait", 2))
    return outcome, {**first.stored(), **second.stored()}, second


def test_run_timed_out_in_a_queued_retry_wait_ends_the_waiting_step_failed(
    mock_http: MockHttpServer,
) -> None:
    """The step waiting to retry has run: it ends failed by the timeout, not 'not reached'."""
    mock_http.route("GET", "/down", status=503)
    wf = fetch_then_tell(mock_http.url("/down"), LONG_WAIT, top="timeout: 120\n")

    outcome, _stored, recorder = woken_after_the_run_timed_out(wf)

    assert (outcome.status, outcome.error) == ("failed", "the run timed out: it may take 120 s")
    assert recorder.step_events("fetch") == ["step_failed"]
    fetch = result_of(outcome, "fetch")
    assert (fetch.status, fetch.attempts, fetch.iteration) == ("failed", 1, 1)
    assert fetch.error == "the run timed out: it may take 120 s during this step"
    assert fetch.output["error"]["kind"] == "timeout"
    assert result_of(outcome, "tell").error == NOT_REACHED
    assert len(mock_http.requests_to("/down")) == 1


def test_redrive_of_a_run_timed_out_in_a_queued_retry_wait_tries_the_step_again(
    mock_http: MockHttpServer,
) -> None:
    """The redrive gives the waiting step a fresh deadline and all its tries: it runs, and passes.

    Given a run that timed out while its step waited in the queue to retry, when it
    is redriven, then the step is requested again (as the same execution) and the
    run completes.
    """
    answer_in_turn(mock_http, "/flaky", 503, 200)
    wf = fetch_then_tell(mock_http.url("/flaky"), LONG_WAIT, top="timeout: 120\n")
    timed_out, stored, second = woken_after_the_run_timed_out(wf)
    assert timed_out.status == "failed"

    outcome, recorder = start(wf, resume=Resume(second.checkpoint(), stored, "redrive", 3))

    assert (outcome.status, outcome.error) == ("completed", None)
    assert keys(mock_http, "/flaky") == ["run-1/fetch/1", "run-1/fetch/1"]
    started = [d.get("attempt", 1) for d in recorder.of("step_started") if d["step_id"] == "fetch"]
    assert started == [1]
    assert result_of(outcome, "tell").output["message"] == "got 200"
