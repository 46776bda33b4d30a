"""Session-wide fixtures: one local stack per test process, and the Redis it uses.

Redis: the one ``REDIS_URL`` names (``make test`` sets it to the machine's Redis
when one answers), otherwise an embedded fakeredis server on a loopback port. The
header of the test report says which, so a run never silently skips the real one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stepstream.nodes import llm
from stepstream_local.stack import LocalStack
from tests.support.servers import FakeMessagesApi

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
# Copies of ../shared/cases (users' reports distilled into inputs), kept with the tests
# so that any clone can run them.
CASES = ROOT / "tests" / "cases"


def pytest_report_header() -> str:
    """Say which Redis the integration tests use."""
    url = os.environ.get("REDIS_URL")
    return f"redis: {url}" if url else "redis: embedded fakeredis (REDIS_URL unset)"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL: the real one from the environment, else an embedded fake."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"redis://{host}:{port}/0"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def messages_api() -> Iterator[FakeMessagesApi]:
    """The local stand-in of the Messages API that llm steps of the stack talk to."""
    with FakeMessagesApi(api_key="test-key") as server:
        yield server


@pytest.fixture(scope="session")
def stack(redis_url: str, messages_api: FakeMessagesApi) -> Iterator[LocalStack]:
    """One local stack per test process: moto, the three functions, the SQS poller."""
    os.environ["ANTHROPIC_API_KEY"] = "test-key"
    os.environ["ANTHROPIC_BASE_URL"] = messages_api.base_url
    llm._client = None  # built again from the variables above on the first llm step
    with LocalStack(redis_url=redis_url, log_level="WARNING") as running:
        yield running


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    """An HTTP client for the stack's API (and its stream, which shares the port)."""
    assert stack.urls is not None
    with httpx.Client(base_url=stack.urls.api, timeout=30) as client:
        yield client
