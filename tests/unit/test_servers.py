"""The local stand-ins themselves: they must behave like what they replace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.servers import FakeMessagesApi, MockHttpServer, RecordedRequest, Reply

HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
REQUEST = {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A plain HTTP client, closed after the test."""
    with httpx.Client(timeout=5) as plain:
        yield plain


@pytest.fixture
def api() -> Iterator[FakeMessagesApi]:
    """A started FakeMessagesApi that expects the key ``sk-test``."""
    with FakeMessagesApi(default_reply="hello there", api_key="sk-test") as server:
        yield server


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an API error response, after checking the envelope."""
    payload = response.json()
    assert payload["type"] == "error"
    assert set(payload["error"]) == {"type", "message"}
    assert payload["request_id"] == response.headers["request-id"]
    return payload["error"]


def test_mock_http_server_records_method_path_query_headers_and_body(
    mock_http: MockHttpServer, client: httpx.Client
) -> None:
    mock_http.route("POST", "/charge", json={"ok": True})

    response = client.post(
        mock_http.url("/charge?order=A-1&order=A-2"), json={"amount": 12.5}, headers={"X-Id": "7"}
    )

    assert (response.status_code, response.json()) == (200, {"ok": True})
    [request] = mock_http.requests
    assert (request.method, request.path) == ("POST", "/charge")
    assert request.target == "/charge?order=A-1&order=A-2"
    assert request.query == {"order": ["A-1", "A-2"]}
    assert request.headers["x-id"] == "7"
    assert request.json() == {"amount": 12.5}


def test_mock_http_server_unrouted_request_gets_json_404(
    mock_http: MockHttpServer, client: httpx.Client
) -> None:
    mock_http.route("GET", "/ok", json={})

    response = client.post(mock_http.url("/ok"))

    assert response.status_code == 404
    assert response.json() == {"error": "no route for POST /ok"}
    assert len(mock_http.requests) == 1


def test_mock_http_server_later_route_replaces_earlier(
    mock_http: MockHttpServer, client: httpx.Client
) -> None:
    mock_http.route("GET", "/state", json={"state": "pending"})
    mock_http.route(
        "GET", "/state", status=201, body="done", headers={"Content-Type": "text/plain"}
    )

    response = client.get(mock_http.url("/state"))

    assert (response.status_code, response.text) == (201, "done")
    assert response.headers["content-type"] == "text/plain"


def test_mock_http_server_handler_builds_reply_from_request(
    mock_http: MockHttpServer, client: httpx.Client
) -> None:
    def echo(request: RecordedRequest) -> Reply:
        return Reply(200, request.body, {"Content-Type": "application/json"})

    mock_http.respond_with("post", "/echo", echo)

    assert client.post(mock_http.url("/echo"), json={"a": [1]}).json() == {"a": [1]}


def test_mock_http_server_stopped_refuses_connections(client: httpx.Client) -> None:
    with MockHttpServer() as server:
        url = server.url("/")

    with pytest.raises(httpx.ConnectError):
        client.get(url)


def test_fake_messages_api_answers_in_message_shape(
    api: FakeMessagesApi, client: httpx.Client
) -> None:
    response = client.post(api.url("/v1/messages"), json=REQUEST, headers=HEADERS)

    assert response.status_code == 200
    message = response.json()
    assert message["id"].startswith("msg_")
    assert {k: message[k] for k in ("type", "role", "model", "stop_reason", "stop_sequence")} == {
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "stop_reason": "end_turn",
        "stop_sequence": None,
    }
    assert message["content"] == [{"type": "text", "text": "hello there"}]
    assert (message["usage"]["input_tokens"], message["usage"]["output_tokens"]) == (1, 2)


def test_fake_messages_api_first_matching_rule_wins(
    api: FakeMessagesApi, client: httpx.Client
) -> None:
    api.reply_when("ticket", "triaged")
    api.reply_when("hi", "greeted")
    blocks = [{"type": "text", "text": "a ticket, hi"}]
    body = {**REQUEST, "messages": [{"role": "user", "content": blocks}]}

    response = client.post(api.url("/v1/messages"), json=body, headers=HEADERS)

    assert response.json()["content"][0]["text"] == "triaged"
    assert api.prompts == ["a ticket, hi"]


def test_fake_messages_api_missing_key_is_authentication_error(
    api: FakeMessagesApi, client: httpx.Client
) -> None:
    headers = {"anthropic-version": "2023-06-01"}

    response = client.post(api.url("/v1/messages"), json=REQUEST, headers=headers)

    assert response.status_code == 401
    assert error_of(response)["type"] == "authentication_error"


def test_fake_messages_api_wrong_key_is_refused(api: FakeMessagesApi, client: httpx.Client) -> None:
    headers = {**HEADERS, "x-api-key": "sk-other"}

    response = client.post(api.url("/v1/messages"), json=REQUEST, headers=headers)

    assert response.status_code == 401
    assert error_of(response) == {"type": "authentication_error", "message": "invalid x-api-key"}


def test_fake_messages_api_accepts_key_as_bearer_token(
    api: FakeMessagesApi, client: httpx.Client
) -> None:
    headers = {"authorization": "Bearer sk-test", "anthropic-version": "2023-06-01"}

    response = client.post(api.url("/v1/messages"), json=REQUEST, headers=headers)

    assert response.status_code == 200


@pytest.mark.parametrize("missing", ["model", "max_tokens", "messages"])
def test_fake_messages_api_missing_field_is_invalid_request(
    missing: str, api: FakeMessagesApi, client: httpx.Client
) -> None:
    body = {key: value for key, value in REQUEST.items() if key != missing}

    response = client.post(api.url("/v1/messages"), json=body, headers=HEADERS)

    assert response.status_code == 400
    assert error_of(response) == {
        "type": "invalid_request_error",
        "message": f"{missing}: Field required",
    }


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"x-api-key": "sk-test"}, b"{}"),
        (HEADERS, b"not json"),
        (HEADERS, b'{"model": "m", "max_tokens": 10, "messages": []}'),
        (HEADERS, b'{"model": "m", "max_tokens": 0, "messages": [{"role": "user"}]}'),
    ],
)
def test_fake_messages_api_malformed_request_is_invalid_request(
    headers: dict[str, str], content: bytes, api: FakeMessagesApi, client: httpx.Client
) -> None:
    response = client.post(api.url("/v1/messages"), content=content, headers=headers)

    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


def test_fake_messages_api_queued_failure_answers_once(
    api: FakeMessagesApi, client: httpx.Client
) -> None:
    api.fail_next(529, "overloaded_error", "Overloaded")

    first = client.post(api.url("/v1/messages"), json=REQUEST, headers=HEADERS)
    second = client.post(api.url("/v1/messages"), json=REQUEST, headers=HEADERS)

    assert first.status_code == 529
    assert error_of(first) == {"type": "overloaded_error", "message": "Overloaded"}
    assert second.status_code == 200


def test_fake_messages_api_other_paths_not_found(
    api: FakeMessagesApi, client: httpx.Client
) -> None:
    response = client.get(api.url("/v1/models"), headers=HEADERS)

    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found_error"
