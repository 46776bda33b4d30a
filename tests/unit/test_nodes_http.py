"""The http node against a real local server: requests as configured, responses handed on."""

from __future__ import annotations

import time
from typing import Any

import pytest

from stepstream.errors import StepError, TemplateError
from stepstream.nodes import _http, http
from tests.support.servers import MockHttpServer, Reply, json_reply
from tests.unit.conftest import StepContextFactory


def http_step(url: str, **keys: object) -> dict[str, object]:
    """An http step's config."""
    return {"id": "call", "type": "http", "url": url, **keys}


def test_http_get_json_response_gives_status_body_and_headers(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("GET", "/quote", json={"price": 30.4}, headers={"X-Trace": "t-1"})

    output = http.run(step_context(http_step(mock_http.url("/quote"))))

    assert output["status_code"] == 200
    assert output["body"] == {"price": 30.4}
    assert output["headers"]["x-trace"] == "t-1"
    assert output["headers"]["content-type"] == "application/json"
    assert [r.method for r in mock_http.requests] == ["GET"]


def test_http_text_response_body_kept_as_text(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("GET", "/page", body="<p>hello</p>", headers={"Content-Type": "text/html"})

    output = http.run(step_context(http_step(mock_http.url("/page"))))

    assert output["body"] == "<p>hello</p>"


def test_http_empty_response_body_is_empty_string(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("DELETE", "/item", status=204)

    output = http.run(step_context(http_step(mock_http.url("/item"), method="delete")))

    assert (output["status_code"], output["body"]) == (204, "")
    assert mock_http.requests[0].method == "DELETE"


def test_http_error_status_fails_step_with_the_response_readable(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("GET", "/health", status=503, json={"ok": False})

    with pytest.raises(StepError, match="answered 503") as caught:
        http.run(step_context(http_step(mock_http.url("/health"))))

    assert (caught.value.kind, caught.value.status_code) == ("http_status", 503)
    assert caught.value.output["body"] == {"ok": False}


@pytest.mark.parametrize(
    ("accept", "status"), [("any", 503), ([200, 404], 404), (["4xx"], 418), (["5xx"], 500)]
)
def test_http_accepted_status_completes_step(
    mock_http: MockHttpServer, step_context: StepContextFactory, accept: Any, status: int
) -> None:
    mock_http.route("GET", "/health", status=status, json={"ok": False})

    output = http.run(step_context(http_step(mock_http.url("/health"), accept_status=accept)))

    assert output["status_code"] == status
    assert output["body"] == {"ok": False}


def test_http_status_outside_accept_list_fails_step(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("GET", "/health", status=200, json={})

    with pytest.raises(StepError, match="answered 200"):
        http.run(step_context(http_step(mock_http.url("/health"), accept_status=[204])))


def test_http_sends_idempotency_key_of_run_step_and_iteration(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("POST", "/orders", json={})

    http.run(step_context(http_step(mock_http.url("/orders"), method="POST"),
                          run_id="run-9", iteration=3))
    http.run(step_context(http_step(mock_http.url("/orders"), method="POST",
                                    headers={"idempotency-key": "mine"}), run_id="run-9"))

    first, second = mock_http.requests_to("/orders")
    assert first.headers["idempotency-key"] == "run-9/call/3"
    assert second.headers["idempotency-key"] == "mine"


def test_http_trickling_response_fails_at_the_total_deadline(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    # Each chunk comes well within any per-read timeout; the whole takes too long.
    trickle = Reply(200, b"", {}, chunks=(b"x" * 10,) * 20, chunk_delay=0.1)
    mock_http.respond_with("GET", "/trickle", lambda _request: trickle)

    started = time.monotonic()
    with pytest.raises(StepError, match="time ran out") as caught:
        http.run(step_context(http_step(mock_http.url("/trickle"), timeout=0.5)))

    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 1.5


def test_http_slow_trickle_fails_when_the_deadline_passes_not_at_the_next_byte(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    """Headers at once, then a byte every 1.5 s: the wait for a byte ends at the deadline."""
    trickle = Reply(200, b"", {}, chunks=(b"x",) * 10, chunk_delay=1.5)
    mock_http.respond_with("GET", "/drip", lambda _request: trickle)

    started = time.monotonic()
    with pytest.raises(StepError, match="time ran out") as caught:
        http.run(step_context(http_step(mock_http.url("/drip"), timeout=2)))

    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 2.8


def test_http_without_a_deadline_bounds_each_wait_not_the_whole_answer(
    mock_http: MockHttpServer, step_context: StepContextFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no ``timeout``, a body taking longer than one wait completes; one long gap fails."""
    monkeypatch.setattr(_http, "DEFAULT_WAIT_SECONDS", 0.5)
    steady = Reply(200, b"", {}, chunks=(b"x",) * 8, chunk_delay=0.2)
    mock_http.respond_with("GET", "/steady", lambda _request: steady)
    mock_http.route("GET", "/stalled", json={}, delay=3.0)

    output = http.run(step_context(http_step(mock_http.url("/steady"))))
    started = time.monotonic()
    with pytest.raises(StepError, match="timed out") as caught:
        http.run(step_context(http_step(mock_http.url("/stalled"))))

    assert output["body"] == "x" * 8
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 1.5


def test_http_mapping_body_sent_as_json_with_types_kept(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("POST", "/echo", json={})
    body = {
        "items": "{trigger.body.items}",
        "vip": "{trigger.body.vip}",
        "note": "{trigger.body.note}",
        "summary": "vip={trigger.body.vip} note={trigger.body.note}",
    }
    trigger = {"body": {"items": [{"name": "Ann", "qty": 2}], "vip": True, "note": None}}
    config = http_step(mock_http.url("/echo"), method="POST", body=body)

    http.run(step_context(config, {"trigger": trigger}))

    received = mock_http.requests_to("/echo")[0]
    assert received.headers["content-type"] == "application/json"
    assert received.json() == {
        "items": [{"name": "Ann", "qty": 2}],
        "vip": True,
        "note": None,
        "summary": "vip=true note=null",
    }


def test_http_quotes_in_values_arrive_as_valid_json(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("POST", "/users", json={})
    name = 'Ann "The Boss" O\'Neil\\'
    config = http_step(mock_http.url("/users"), method="POST", body={"user": "{trigger.body.name}"})

    http.run(step_context(config, {"trigger": {"body": {"name": name}}}))

    assert mock_http.requests[0].json() == {"user": name}


@pytest.mark.parametrize(
    ("body", "sent"),
    [("plain text", b"plain text"), ("{trigger.body.flag}", b"true"), ("{trigger.body.n}", b"7")],
)
def test_http_scalar_body_sent_as_text(
    mock_http: MockHttpServer, step_context: StepContextFactory, body: str, sent: bytes
) -> None:
    mock_http.route("PUT", "/raw", status=200)
    config = http_step(mock_http.url("/raw"), method="PUT", body=body)

    http.run(step_context(config, {"trigger": {"body": {"flag": True, "n": 7}}}))

    assert mock_http.requests[0].body == sent


def test_http_templated_url_and_headers_sent_as_text(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("GET", "/members/7", json={"first_name": "Zoë"})
    config = http_step(
        mock_http.base_url + "/members/{trigger.body.id}?full={trigger.body.full}",
        headers={"X-Member": "{trigger.body.id}", "X-Full": "{trigger.body.full}"},
    )

    output = http.run(step_context(config, {"trigger": {"body": {"id": 7, "full": False}}}))

    request = mock_http.requests[0]
    assert output["body"] == {"first_name": "Zoë"}
    assert request.target == "/members/7?full=false"
    assert (request.headers["x-member"], request.headers["x-full"]) == ("7", "false")


def test_http_connection_refused_fails_step_on_url(step_context: StepContextFactory) -> None:
    with MockHttpServer() as gone:
        url = gone.url("/nothing")

    with pytest.raises(StepError, match=f"GET {url} failed") as caught:
        http.run(step_context(http_step(url)))

    assert caught.value.field == "url"


def test_http_slow_response_past_timeout_fails_step(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("GET", "/slow", json={}, delay=2.0)

    with pytest.raises(StepError, match="timed out") as caught:
        http.run(step_context(http_step(mock_http.url("/slow"), timeout=0.2)))

    assert (caught.value.field, caught.value.kind) == ("timeout", "timeout")


def test_http_unresolvable_url_reference_fails_before_any_request(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    config = http_step(mock_http.base_url + "/users/{trigger.body.name}")

    with pytest.raises(TemplateError) as caught:
        http.run(step_context(config))

    assert (caught.value.reference, caught.value.field) == ("trigger.body.name", "url")
    assert mock_http.requests == []


def test_http_data_in_url_stays_one_path_segment(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.respond_to_the_rest(lambda _request: json_reply(200, {}))
    body = {"base": mock_http.base_url, "name": "../../admin?force=1#"}
    config = http_step("{trigger.body.base}/files/{trigger.body.name}")

    http.run(step_context(config, {"trigger": {"body": body}}))

    [request] = mock_http.requests
    assert request.target == "/files/..%2F..%2Fadmin%3Fforce%3D1%23"
    assert request.query == {}
