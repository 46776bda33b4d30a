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

import pytest

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
