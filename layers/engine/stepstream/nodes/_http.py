"""The one HTTP client a process uses for http and notify steps.

Created on first use and kept for the life of the Lambda container, so warm
invocations reuse its connection pool instead of opening new connections.
"""

from __future__ import annotations

import httpx

_client: httpx.Client | None = None


def client() -> httpx.Client:
    """The process-wide ``httpx.Client``."""
    global _client
    if _client is None:
        _client = httpx.Client(follow_redirects=True, timeout=30.0)
    return _client
