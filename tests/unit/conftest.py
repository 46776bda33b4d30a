"""Fixtures of the unit suite: local servers and step contexts for node tests."""

from __future__ import annotations

import time

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from stepstream.definition import Step
from stepstream.nodes import StepContext
from stepstream.nodes import llm as llm_node

from tests.support.servers import FakeMessagesApi, MockHttpServer

StepContextFactory = Callable[..., StepContext]


@pytest.fixture
def mock_http() -> Iterator[MockHttpServer]:
    """A started MockHttpServer with no routes yet."""
    with MockHttpServer() as server:
        yield server


@pytest.fixture
def messages_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesApi]:
    """A FakeMessagesApi that the llm node's SDK client talks to, with a test key.

    The llm node keeps its SDK client for the life of the process, so the cached
    client is dropped before and after each test: every test gets one built from
    its own environment.
    """
    with FakeMessagesApi(api_key="sk-test-unit") as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-unit")
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        monkeypatch.delenv("ANTHROPIC_CUSTOM_HEADERS", raising=False)
        monkeypatch.setattr(llm_node, "_client", None)
        yield api
        if llm_node._client is not None:
            llm_node._client.close()
        monkeypatch.setattr(llm_node, "_client", None)


@pytest.fixture
def step_context() -> StepContextFactory:
    """Build the context a node sees for one step, given earlier outputs by step id."""

    def build(
        config: dict[str, Any], outputs: dict[str, Any] | None = None, run_id: str = "run-1",
        iteration: int = 1,
    ) -> StepContext:
        scope = {"trigger": {"body": {}, "headers": {}}, **(outputs or {})}
        step = Step(config["id"], config["type"], config)
        known = frozenset({*scope, config["id"]})
        # As the runner does: a step's ``timeout`` becomes the deadline of its attempt.
        timeout = config.get("timeout")
        deadline = time.time() + float(timeout) if timeout else None
        return StepContext(step, scope, known, run_id, None, deadline, iteration)

    return build
