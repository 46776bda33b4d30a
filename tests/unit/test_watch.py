"""The terminal watcher: its lines for each event, its exit codes, and when it stops."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from stepstream_local.watch import Follower, exit_code, render, watch

COUNTS = {"steps_completed": 1, "total_steps": 3, "progress": 33}


def _event(seq: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "run_id": "r", "seq": seq, "timestamp": "t", **COUNTS, **fields}


def _step(seq: int, kind: str, **fields: Any) -> dict[str, Any]:
    return _event(seq, kind, step_id="fetch", node_type="http", iteration=1, **fields)


def _sse(events: list[dict[str, Any]]) -> str:
    return "".join(f"id: {e['seq']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n"
                   for e in events)


REDRIVEN = [
    _event(1, "run_started", status="running"),
    _step(2, "step_failed", status="failed", error="boom", duration_ms=3),
    _event(3, "run_failed", status="failed", error="Step 'fetch' failed"),
    _event(4, "run_resumed", status="running", reason="redrive", attempt=2),
    _step(5, "step_completed", status="completed", duration_ms=4),
    _event(6, "run_completed", status="completed", error=None),
]


def test_render_step_retrying_says_which_attempt_failed_why_and_the_wait() -> None:
    line = render(_step(2, "step_retrying", status="retrying", attempt=1, max_attempts=3,
                        delay_seconds=2, error="HTTP 503\nService Unavailable",
                        error_kind="http_status"))

    assert line == ("step_retrying   ↻ fetch attempt 1/3 failed "
                    "(http_status: HTTP 503 Service Unavailable); retrying in 2.0s")


def test_render_step_retrying_cuts_a_long_error_to_one_short_line() -> None:
    line = render(_step(2, "step_retrying", attempt=2, max_attempts=5, delay_seconds=0.25,
                        error="x" * 500, error_kind="timeout"))

    assert "\n" not in line and len(line) < 200
    assert line.endswith("…); retrying in 0.2s")


@pytest.mark.parametrize(
    ("reason", "words"),
    [("redrive", "redriven after failing"), ("recovered", "executor stopped"),
     ("continuation", "new invocation"), ("retry_wait", "retry wait"),
     ("something_new", "something_new")],
)
def test_render_run_resumed_names_its_reason_and_attempt(reason: str, words: str) -> None:
    line = render(_event(4, "run_resumed", status="running", reason=reason, attempt=2))

    assert line.startswith("run_resumed ") and words in line and "(attempt 2)" in line
    assert line.endswith("1/3")


def test_render_run_cancelled_shows_its_reason_on_the_same_line() -> None:
    with_reason = render(_event(3, "run_cancelled", status="cancelled", error="by alice"))
    without = render(_event(3, "run_cancelled", status="cancelled", error=None))

    assert with_reason.startswith("run_cancelled") and "cancelled: by alice" in with_reason
    assert "\n" not in with_reason and "error" not in without


@pytest.mark.parametrize(
    ("kind", "code"),
    [("run_completed", 0), ("run_failed", 1), ("run_cancelled", 3), ("run_resumed", 2)],
)
def test_exit_code_tells_cancelled_from_failed_and_from_no_end(kind: str, code: int) -> None:
    assert exit_code({"type": kind}) == code


def _follower(responses: list[httpx.Response]) -> tuple[Follower, list[httpx.Request]]:
    """A follower whose stream answers ``responses`` in turn; the requests it made."""
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return responses[len(requests) - 1]

    client = httpx.Client(base_url="http://stack", transport=httpx.MockTransport(answer))
    return Follower(client, "r", "http://stack/stream"), requests


def _ok(events: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(200, text=_sse(events),
                          headers={"content-type": "text/event-stream"})


def test_follower_terminal_event_in_the_middle_of_a_response_is_followed_by_the_rest() -> None:
    follower, requests = _follower([_ok(REDRIVEN)])

    seen = list(follower.events())

    assert [e["seq"] for e in seen] == [1, 2, 3, 4, 5, 6]
    assert len(requests) == 1


def test_follower_response_ending_on_a_terminal_event_ends_the_watch() -> None:
    follower, requests = _follower([_ok(REDRIVEN[:3])])

    seen = list(follower.events())

    assert seen[-1]["type"] == "run_failed" and len(requests) == 1


def test_follower_response_ending_mid_run_is_resumed_after_its_last_event() -> None:
    cancelled = _event(4, "run_cancelled", status="cancelled", error=None)
    follower, requests = _follower([_ok(REDRIVEN[:2]), _ok([cancelled])])

    seen = list(follower.events())

    assert [e["seq"] for e in seen] == [1, 2, 4]
    assert requests[1].headers["last-event-id"] == "2"
    assert follower.reconnects == 1


def test_follower_204_ends_the_watch_whatever_came_last() -> None:
    follower, requests = _follower([_ok(REDRIVEN[:4]), httpx.Response(204)])

    seen = list(follower.events())

    assert seen[-1]["type"] == "run_resumed" and len(requests) == 2


def test_watch_prints_every_line_and_the_outcome_of_a_cancelled_run() -> None:
    """``watch`` prints each event, then the run's status, and returns the last event."""
    cancelled = _event(3, "run_cancelled", status="cancelled", error="stopped by user")
    follower, _requests = _follower([_ok([*REDRIVEN[:2], cancelled])])
    lines: list[str] = []

    last = watch(follower.client, "r", follower.stream_url, lines.append)

    assert exit_code(last) == 3
    assert lines[-1] == "run cancelled 1/3"
    assert lines[-2].startswith("run_cancelled") and "stopped by user" in lines[-2]
