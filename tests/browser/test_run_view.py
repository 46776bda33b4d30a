"""The run view page (``/api/v1/runs/{run_id}/view``) in headless Chromium.

The page follows the run's stream with ``EventSource``; each test waits for what the
page shows (``body[data-done]`` once the terminal event arrived) and then checks it,
including ``window.__events``, the page's count of every event received by seq.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from stepstream import Settings, tokens
from stepstream.store import Store
from stepstream_local.stack import LocalStack
from tests.integration.conftest import health_pipeline, register, sse_events, stream_url
from tests.support.proxy import TcpProxy
from tests.support.servers import MockHttpServer

HEALTH_STEPS = {
    "receive_event": "completed",
    "fetch_health": "completed",
    "route_on_status": "completed",
    "notify_healthy": "completed",
    "notify_degraded": "skipped",
    "finalize_run": "completed",
}
SLOW_STEPS = ("first", "second", "third")
SLOW_STEP_SECONDS = 1.0
ANOTHER_RUNS_TOKEN = "another run's token"


def queue_run(api: httpx.Client, workflow_id: str) -> dict[str, Any]:
    """Queue a run of ``workflow_id`` (execute-async); return the API's answer."""
    response = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}})
    assert response.status_code == 202, response.text
    return response.json()


def view_url(run_stream_url: str, origin: str | None = None) -> str:
    """The view page of the run whose ``stream_url`` is given, optionally on ``origin``."""
    url = httpx.URL(run_stream_url)
    url = url.copy_with(path=url.path.removesuffix("/stream") + "/view")
    if origin is not None:
        base = httpx.URL(origin)
        url = url.copy_with(scheme=base.scheme, host=base.host, port=base.port)
    return str(url)


def open_until_done(page: Page, url: str) -> str:
    """Open the view at ``url``, wait for the run's terminal event, return ``data-done``."""
    page.goto(url)
    page.wait_for_selector("body[data-done]")
    return page.evaluate("document.body.dataset.done")


def step_rows(page: Page) -> list[tuple[str, str]]:
    """``(step_id, status)`` of each row in the page's steps table, in order."""
    rows = page.eval_on_selector_all(
        "#steps tr", "rows => rows.map(row => [row.dataset.stepId, row.dataset.status])"
    )
    return [(step_id, status) for step_id, status in rows]


def seen_counts(page: Page) -> dict[int, int]:
    """How many times the page received each seq."""
    return {int(seq): count for seq, count in page.evaluate("window.__events").items()}


def assert_one_row_per_step(page: Page, expected: dict[str, str]) -> None:
    rows = step_rows(page)
    step_ids = [step_id for step_id, _status in rows]
    assert len(step_ids) == len(set(step_ids)), f"a step has several rows: {step_ids}"
    assert dict(rows) == expected


def assert_each_event_once(page: Page, api: httpx.Client, run_id: str) -> None:
    stored = [event["seq"] for event in sse_events(api, run_id)]
    assert stored == list(range(1, len(stored) + 1))
    assert seen_counts(page) == dict.fromkeys(stored, 1)


def test_view_health_run_ends_completed_with_each_step_and_event_once(
    api: httpx.Client, page: Page, page_errors: list[str]
) -> None:
    run = queue_run(api, health_pipeline(api, f"view_{uuid.uuid4().hex[:8]}"))

    assert open_until_done(page, view_url(run["stream_url"])) == "completed"

    assert_one_row_per_step(page, HEALTH_STEPS)
    assert_each_event_once(page, api, run["id"])
    assert page.text_content("#run-id") == run["id"]
    assert page.text_content("#run-status") == "completed"
    assert page.eval_on_selector("#progress", "bar => bar.value") == 100
    assert page.text_content('tr[data-step-id="fetch_health"] .type') == "http"
    assert page.text_content('tr[data-step-id="fetch_health"] .duration').endswith("s")
    assert page_errors == []


def slow_workflow(api: httpx.Client, mock: MockHttpServer) -> str:
    """Register a workflow of ``SLOW_STEPS``, each an http step that takes a second."""
    mock.route("GET", "/slow", json={"ok": True}, delay=SLOW_STEP_SECONDS)
    steps = "".join(
        f"  - id: {step_id}\n    type: http\n    url: {mock.url('/slow')}\n"
        for step_id in SLOW_STEPS
    )
    return register(api, f"name: slow_view_{uuid.uuid4().hex[:8]}\nsteps:\n{steps}")


@pytest.mark.parametrize("mode", ["response_stream", "buffered"])
def test_view_connections_cut_mid_run_reconnects_and_shows_everything_once(
    api: httpx.Client,
    stack: LocalStack,
    page: Page,
    page_errors: list[str],
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_LWA_INVOKE_MODE", mode)  # read by the stream on each request
    monkeypatch.setenv("LONG_POLL_SECONDS", "2")
    assert stack.urls is not None
    stack_url = httpx.URL(stack.urls.api)
    with MockHttpServer() as mock, TcpProxy(stack_url.host, stack_url.port or 80) as proxy:
        run = queue_run(api, slow_workflow(api, mock))
        page.goto(view_url(run["stream_url"], origin=proxy.base_url))
        page.wait_for_selector('tr[data-step-id="first"][data-status="completed"]')
        assert page.evaluate("document.body.dataset.done") is None, "the run ended too soon"
        before_cut = proxy.connections

        proxy.cut()

        page.wait_for_selector("body[data-done]")
        assert page.evaluate("document.body.dataset.done") == "completed"
        assert proxy.connections > before_cut >= 1
        assert page.evaluate("window.__opens") >= 2
    assert_one_row_per_step(page, dict.fromkeys(SLOW_STEPS, "completed"))
    assert_each_event_once(page, api, run["id"])
    assert page_errors == []


@pytest.fixture(scope="module")
def health_run(api: httpx.Client) -> dict[str, Any]:
    """One queued health-pipeline run, for the tests that only ask for its page."""
    return queue_run(api, health_pipeline(api, f"view_{uuid.uuid4().hex[:8]}"))


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("not-a-token", 403), ("4102444800.00ff", 403), (ANOTHER_RUNS_TOKEN, 403)],
    ids=["missing", "malformed", "forged", "another-run"],
)
def test_view_with_missing_or_invalid_token_is_refused(
    api: httpx.Client, stack: LocalStack, health_run: dict[str, Any], token: str | None, status: int
) -> None:
    if token == ANOTHER_RUNS_TOKEN:
        token = tokens.issue(stack.stream_secret, str(uuid.uuid4()))
    params = {"token": token} if token is not None else {}

    response = api.get(f"/api/v1/runs/{health_run['id']}/view", params=params)

    assert response.status_code == status
    assert "token" in response.json()["detail"]
    assert "<html" not in response.text


def test_view_with_token_is_self_contained_html(
    api: httpx.Client, health_run: dict[str, Any]
) -> None:
    response = api.get(view_url(stream_url(api, health_run["id"])))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert response.headers["referrer-policy"] == "no-referrer"
    for external in ("http:", "https:", "//cdn", 'src="/', 'href="/'):
        assert external not in response.text


def stored_run(
    api: httpx.Client, stack: LocalStack, events: list[dict[str, Any]], status: str = "completed"
) -> str:
    """Store a finished run with ``events`` as its stream, directly; return its view URL.

    This shows the page events that no engine step emits yet (``step_progress``,
    retries, redrives, cancellation) or that are slow to produce (loops), exactly as
    the stream would carry them.
    """
    settings = Settings.from_env()
    store = Store(settings.workflows_table, settings.runs_table, settings.events_table)
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat()
    store.put_run(
        {
            "run_id": run_id,
            "workflow_id": "view-test",
            "status": status,
            "total_steps": 1,
            "steps_completed": 1,
            "created_at": now,
        }
    )
    for seq, event in enumerate(events, start=1):
        data = {
            "run_id": run_id,
            "seq": seq,
            "timestamp": now,
            "steps_completed": 0,
            "total_steps": 1,
            "progress": 0,
            **event,
        }
        store.put_event(run_id, seq, event["type"], json.dumps(data))
    token = tokens.issue(stack.stream_secret, run_id)
    return str(api.base_url.join(f"/api/v1/runs/{run_id}/view?token={token}"))


def llm_step(event_type: str, **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "step_id": "summarize", "node_type": "llm", **fields}


def test_view_step_progress_appends_text_to_its_row_as_text(
    api: httpx.Client, stack: LocalStack, page: Page, page_errors: list[str]
) -> None:
    deltas = ["Revenue ", "<img src=x onerror=alert(1)> grew", " by 4%."]
    url = stored_run(
        api,
        stack,
        [
            {"type": "run_started", "status": "running"},
            llm_step("step_started", status="running", iteration=1),
            *(
                llm_step("step_progress", status="running", iteration=1, text=text)
                for text in deltas
            ),
            llm_step(
                "step_completed",
                status="completed",
                iteration=1,
                duration_ms=1234.5,
                steps_completed=1,
                progress=100,
            ),
            {
                "type": "run_completed",
                "status": "completed",
                "error": None,
                "steps_completed": 1,
                "progress": 100,
            },
        ],
    )

    assert open_until_done(page, url) == "completed"

    row = 'tr[data-step-id="summarize"]'
    assert page.text_content(f"{row} .detail") == "".join(deltas)
    assert page.locator(f"{row} img").count() == 0
    assert page.text_content(f"{row} .duration") == "1.23 s"
    assert step_rows(page) == [("summarize", "completed")]
    assert page_errors == []


def test_view_step_run_again_in_a_loop_updates_its_one_row(
    api: httpx.Client, stack: LocalStack, page: Page
) -> None:
    url = stored_run(
        api,
        stack,
        [
            {"type": "run_started", "status": "running"},
            llm_step("step_started", status="running", iteration=1),
            llm_step("step_progress", status="running", iteration=1, text="first try"),
            llm_step("step_completed", status="completed", iteration=1, duration_ms=12),
            llm_step("step_started", status="running", iteration=2),
            llm_step("step_progress", status="running", iteration=2, text="second try"),
            llm_step(
                "step_failed",
                status="failed",
                iteration=2,
                duration_ms=7,
                error="max_tokens: <too> small",
            ),
            {"type": "run_failed", "status": "failed", "error": "Step 'summarize' failed"},
        ],
    )

    assert open_until_done(page, url) == "failed"

    row = 'tr[data-step-id="summarize"]'
    assert step_rows(page) == [("summarize", "failed")]
    assert page.text_content(f"{row} .iteration") == "2"
    assert page.text_content(f"{row} .detail") == "second trymax_tokens: <too> small"
    assert page.text_content(f"{row} .error") == "max_tokens: <too> small"
    assert page.text_content("#run-error") == "Step 'summarize' failed"
    assert page.text_content("#run-status") == "failed"


def http_step(event_type: str, **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "step_id": "fetch", "node_type": "http", "iteration": 1,
            **fields}


RETRYING = http_step("step_retrying", status="retrying", attempt=1, max_attempts=3,
                     delay_seconds=2.0, error="HTTP 503", error_kind="http_status")


def test_view_redriven_run_goes_on_past_its_run_failed_to_completed(
    api: httpx.Client, stack: LocalStack, page: Page, page_errors: list[str]
) -> None:
    url = stored_run(
        api,
        stack,
        [
            {"type": "run_started", "status": "running"},
            http_step("step_started", status="running"),
            http_step("step_failed", status="failed", duration_ms=5, error="HTTP 503"),
            {"type": "run_failed", "status": "failed", "error": "Step 'fetch' failed"},
            {"type": "run_resumed", "status": "running", "reason": "redrive", "attempt": 2},
            http_step("step_started", status="running"),
            RETRYING,
            http_step("step_completed", status="completed", duration_ms=9, steps_completed=1),
            {"type": "run_completed", "status": "completed", "error": None, "progress": 100},
        ],
    )

    assert open_until_done(page, url) == "completed"

    assert page.text_content("#run-status") == "completed"
    assert page.text_content("#log") == "resumed: redriven after failing (attempt 2)"
    assert page.is_hidden("#run-error")
    assert step_rows(page) == [("fetch", "completed")]
    assert page.text_content('tr[data-step-id="fetch"] .detail') == ""
    assert seen_counts(page) == dict.fromkeys(range(1, 10), 1)
    assert page_errors == []


def test_view_run_cancelled_in_a_retry_wait_ends_cancelled_with_the_retry_shown(
    api: httpx.Client, stack: LocalStack, page: Page, page_errors: list[str]
) -> None:
    url = stored_run(
        api,
        stack,
        [
            {"type": "run_started", "status": "running"},
            http_step("step_started", status="running"),
            RETRYING,
            {"type": "run_cancelled", "status": "cancelled", "error": "cancelled by the user"},
        ],
        status="cancelled",
    )

    assert open_until_done(page, url) == "cancelled"

    row = 'tr[data-step-id="fetch"]'
    assert page.text_content("#run-status") == "cancelled"
    assert page.text_content("#run-error") == "cancelled by the user"
    assert step_rows(page) == [("fetch", "retrying")]
    assert page.text_content(f"{row} .status") == "retrying (attempt 2/3)"
    assert page.text_content(f"{row} .retry") == (
        "attempt 1 failed (http_status: HTTP 503); retrying in 2.0 s"
    )
    assert page.text_content("#connection") == "finished"
    assert page_errors == []
