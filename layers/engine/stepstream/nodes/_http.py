"""The HTTP client of http and notify steps, and one request under a step's deadline.

The client is created on first use and kept for the life of the Lambda container, so
warm invocations reuse its connection pool instead of opening new connections.

httpx's timeouts bound each wait (to connect, to send, for the next bytes), not the
whole exchange: a server that sends its headers at once and then a byte now and then
never trips them. A step's ``timeout`` is a total deadline, so every wait must end by
it. httpcore (1.0.x) cannot be told so from outside: it reads the read timeout once
per response, before the headers and again before the body, and passes that same
number to every socket read, so changing the request's ``timeout`` extension between
chunks changes nothing. What it does offer is a network backend of our own: the
client's connection pool connects, sends and reads through ``_DeadlineBackend``,
which cuts each wait's timeout to the time left before the deadline of the request
in progress (``_deadline``, set by ``send`` on the thread that makes the request).
A wait that reaches the deadline ends as httpcore's own timeout would, with the
same exception. Without a step deadline each wait keeps ``DEFAULT_WAIT_SECONDS``.

A watchdog thread that closes the response at the deadline was the other way: it
cannot reach the connection before the headers arrive, and a socket shut under a
body that ends at close reads as a complete, truncated body.

The client reads no proxy settings from the environment (httpx does so only for the
transport it builds itself); a Lambda function reaches the internet without one.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from stepstream.errors import StepError

if TYPE_CHECKING:
    from stepstream.nodes._context import StepContext

# Without a step deadline, each wait of a request is bounded by this many seconds.
DEFAULT_WAIT_SECONDS = 30.0
IDEMPOTENCY_HEADER = "Idempotency-Key"

# When the request in progress on this thread must be done (``time.time()``), if ever.
_deadline: ContextVar[float | None] = ContextVar("stepstream_http_deadline", default=None)
_client: httpx.Client | None = None


def _until_deadline(timeout: float | None, late: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` cut to the time left before ``_deadline``; ``late`` if none is left."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.time()
    if left <= 0:
        # A timeout of 0 would put the socket in non-blocking mode: a read error, not this.
        raise late("the step's time ran out")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the deadline of its request."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _until_deadline(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _until_deadline(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        wait = _until_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, wait))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's blocking-socket backend, with connections that end waits by the deadline."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        wait = _until_deadline(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, wait, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        wait = _until_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, wait, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport over a pool that talks through ``_DeadlineBackend``.

    ``HTTPTransport`` takes no network backend and sends every request through the
    pool it keeps in ``_pool``, so that pool is replaced by one built with httpcore's
    public arguments and the limits of httpx's default transport (``DEFAULT_LIMITS``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_DeadlineBackend(),
        )


def client() -> httpx.Client:
    """The process-wide ``httpx.Client``."""
    global _client
    if _client is None:
        _client = httpx.Client(transport=_DeadlineTransport(), follow_redirects=True,
                               timeout=DEFAULT_WAIT_SECONDS)
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
    token = _deadline.set(ctx.deadline)
    try:
        with client().stream(method, url, headers=headers, timeout=wait, **body) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                # Bytes that came together may outlast the deadline without another read.
                if ctx.deadline is not None and time.time() > ctx.deadline:
                    raise StepError(f"{method} {url} was still answering when the step's "
                                    "time ran out", kind="timeout", field="timeout")
            return Reply(response.status_code, dict(response.headers), b"".join(chunks),
                         response.encoding or "utf-8")
    except httpx.TimeoutException as exc:
        raise StepError(f"{method} {url} timed out: {_why(ctx, exc)}",
                        kind="timeout", field="timeout") from exc
    except httpx.HTTPError as exc:
        raise StepError(f"{method} {url} failed: {exc}", kind="network", field="url") from exc
    finally:
        _deadline.reset(token)


def _why(ctx: StepContext, exc: httpx.TimeoutException) -> str:
    # Under a deadline every wait is cut to the time left, so any timeout is the deadline's.
    if ctx.deadline is not None:
        return "the step's time ran out"
    return str(exc) or type(exc).__name__
