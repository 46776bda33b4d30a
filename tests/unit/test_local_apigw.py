"""The local stack's API Gateway front: what a client gets when the function is slow."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from stepstream_local import apigw
from stepstream_local.runtime import LocalFunction


def _client(handler: Any, timeout: int) -> TestClient:
    front = apigw.HttpApiFront(LocalFunction("ApiFunction", handler, 128, timeout),
                               [("GET", "/slow")])

    async def endpoint(request: Request) -> Response:
        return await front(request)

    return TestClient(Starlette(routes=[Route("/slow", endpoint)]))


def test_function_slower_than_the_integration_timeout_is_a_504_and_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As on AWS: the client gets API Gateway's 504 when it stops waiting; the
    invocation is not cut short by it."""
    monkeypatch.setattr(apigw, "INTEGRATION_TIMEOUT_SECONDS", 0.3)
    finished = threading.Event()

    def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
        time.sleep(0.6)
        finished.set()
        return {"statusCode": 200, "body": "late"}

    started = time.monotonic()
    answer = _client(slow, timeout=30).get("/slow")

    assert answer.status_code == 504 and answer.json() == {"message": "Endpoint request timed out"}
    assert time.monotonic() - started < 0.55
    assert finished.wait(2), "the invocation was cut short"


def test_function_within_its_time_answers_as_it_returns() -> None:
    def quick(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 201, "body": "made", "headers": {"x-made": "yes"}}

    answer = _client(quick, timeout=30).get("/slow")

    assert (answer.status_code, answer.text, answer.headers["x-made"]) == (201, "made", "yes")
