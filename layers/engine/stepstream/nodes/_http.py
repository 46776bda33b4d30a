"""The HTTP client of http and notify steps, and one request under a step's deadline.

The client is created on first use and kept for the life of the Lambda container, so
warm invocations reuse its connection pool instead of opening new connections.

httpx's timeouts bound each wait (to connect, between two reads), not the whole
exchange: a server that trickles a byte a second never trips them. ``send`` reads
the body in chunks and checks the step's deadline between them, so ``timeout`` is
the total time a step may take.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from stepstream.errors import StepError

if TYPE_CHECKING:
    from stepstream.nodes._context import StepContext

# Without a step deadline, each wait of a request is bounded by this many seconds.
DEFAULT_WAIT_SECONDS = 30.0
IDEMPOTENCY_HEADER = "Idempotency-Key"

_client: httpx.Client | None = None


def client() -> httpx.Client:
    """The process-wide ``httpx.Client``."""
    global _client
    if _client is None:
        _client = httpx.Client(follow_redirects=True, timeout=DEFAULT_WAIT_SECONDS)
    return _client


@dataclass(frozen=True)
class Reply:
    """A response read whole within the step's deadline."""

    status_code: int
    headers: dict[str, str]
    content: bytes
    encoding: str

    def body(self) -> Any:
        """The body as JSON if it is JSON, else as text ("" when empty)."""
        if not self.content:
            return ""
        try:
            return json.loads(self.content)
        except ValueError:
            return self.content.decode(self.encoding, errors="replace")


def send(
    ctx: StepContext, method: str, url: str, headers: dict[str, str], **body: Any
) -> Reply:
    """Send one request for the step in ``ctx``, with its ``Idempotency-Key``.

    Raises:
        StepError: No response (kind ``network``) or not within the deadline (``timeout``).
    """
    if not any(name.lower() == IDEMPOTENCY_HEADER.lower() for name in headers):
        headers = {**headers, IDEMPOTENCY_HEADER: ctx.idempotency_key}
    left = ctx.remaining()
    wait = DEFAULT_WAIT_SECONDS if left is None else left
    try:
        with client().stream(method, url, headers=headers, timeout=wait, **body) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if ctx.deadline is not None and time.time() > ctx.deadline:
                    raise StepError(f"{method} {url} was still answering when the step's "
                                    "time ran out", kind="timeout", field="timeout")
            return Reply(response.status_code, dict(response.headers), b"".join(chunks),
                         response.encoding or "utf-8")
    except httpx.TimeoutException as exc:
        raise StepError(f"{method} {url} timed out: {exc or type(exc).__name__}",
                        kind="timeout", field="timeout") from exc
    except httpx.HTTPError as exc:
        raise StepError(f"{method} {url} failed: {exc}", kind="network", field="url") from exc
