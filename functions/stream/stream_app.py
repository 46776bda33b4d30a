"""Stream function: an ASGI app that serves a run's events as Server-Sent Events.

It runs under the AWS Lambda Web Adapter behind a function URL, and under uvicorn
locally. Two modes share the event-reading code (``stepstream.events.follow``):

- streaming (``AWS_LWA_INVOKE_MODE=response_stream``, the default): one response
  that replays the stored events after the client's position, then follows new ones
  as they happen until the run ends;
- buffered long-poll (``AWS_LWA_INVOKE_MODE=buffered``, for deployments where
  streaming URLs are unsupported): each response carries the events available now,
  or waits up to ``LONG_POLL_SECONDS`` (20 s; the variable of that name changes it)
  for the first new one, then ends; the client
  (``EventSource`` does this by itself) reconnects with ``Last-Event-ID``.

A stream needs the run's signed token (``?token=``) when ``STREAM_TOKEN_SECRET`` is
set; ``EventSource`` cannot send headers, so the token travels in the URL.

``GET /api/v1/runs/{run_id}/view`` (same token) serves ``view.html``: a page that
watches the run through ``EventSource`` and fills in its steps as they happen.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from stepstream import NotFoundError, Settings, tokens
from stepstream._json import dumps
from stepstream.events import TERMINAL_TYPES, follow
from stepstream.store import FINISHED, Store

if TYPE_CHECKING:
    import redis.asyncio

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15
RETRY_MS = 1_000
LONG_POLL_SECONDS = 20.0
# In buffered mode, after the first new event, keep collecting while more follow closely.
LONG_POLL_LINGER_SECONDS = 0.05
LONG_POLL_MAX_EVENTS = 500
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Lines end in LF alone (SSE allows CR LF, CR or LF): a script reading the stream with
# curl and grep then gets `id: 7`, not `id: 7\r`.
SEP = "\n"
VIEW_PAGE = (Path(__file__).parent / "view.html").read_text(encoding="utf-8")


@cache
def settings() -> Settings:
    """The process's settings, read once."""
    return Settings.from_env()


@cache
def store() -> Store:
    """The process's store, built on first use from the environment."""
    config = settings()
    return Store(config.workflows_table, config.runs_table, config.events_table)


@cache
def live() -> redis.asyncio.Redis | None:
    """The Redis client for live events, or None when ``REDIS_URL`` is unset."""
    if not settings().redis_url:
        return None
    import redis.asyncio

    return redis.asyncio.Redis.from_url(settings().redis_url)


def buffered() -> bool:
    """Whether this function answers in buffered long-poll mode."""
    return os.environ.get("AWS_LWA_INVOKE_MODE", "response_stream").lower() == "buffered"


def _number(raw: str | None) -> int | None:
    if raw and raw.isascii() and raw.isdigit() and len(raw) <= 15:
        return int(raw)
    return None


class _BadPosition(ValueError):
    """``?after=`` is not a seq."""


def _position(request: Request) -> int:
    """The last ``seq`` the client has: ``Last-Event-ID``, else ``?after=``, else 0.

    A ``Last-Event-ID`` that is no seq is ignored, as a browser may send any id it last
    saw; an ``after`` the client typed that is no seq is refused (``_BadPosition``).
    """
    header = _number(request.headers.get("last-event-id"))
    raw = request.query_params.get("after")
    query = _number(raw)
    if raw is not None and query is None:
        raise _BadPosition(f"after must be the seq of an event (0 or more), not {raw!r}")
    return header if header is not None else query or 0


def _frame(event: dict[str, Any], retry: int = RETRY_MS) -> ServerSentEvent:
    return ServerSentEvent(data=dumps(event), event=event["type"], id=str(event["seq"]),
                           retry=retry, sep=SEP)


async def _frames(run_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    async for event in follow(store(), run_id, after, live()):
        yield _frame(event)


async def _long_poll(run_id: str, after: int) -> list[dict[str, Any]]:
    """The events after ``after`` available within the long-poll window.

    A response ends on a terminal event only where ``follow`` ended, i.e. when the
    table had nothing after it: a redriven run's ``run_failed`` is followed by more.
    """
    events: list[dict[str, Any]] = []
    source = follow(store(), run_id, after, live())
    wait: float | None = float(os.environ.get("LONG_POLL_SECONDS", LONG_POLL_SECONDS))
    try:
        while True:
            event = await asyncio.wait_for(anext(source), timeout=wait)
            events.append(event)
            if event["type"] in TERMINAL_TYPES:
                # Whether more follows is one table read away (follow asks): wait for it.
                wait = None
            elif len(events) >= LONG_POLL_MAX_EVENTS:
                break
            else:
                wait = LONG_POLL_LINGER_SECONDS
    except (TimeoutError, StopAsyncIteration):
        pass
    finally:
        await source.aclose()
    return events


async def _buffered_response(run_id: str, after: int) -> Response:
    events = await _long_poll(run_id, after)
    ended = bool(events) and events[-1]["type"] in TERMINAL_TYPES
    # Reconnect at once while the run goes on; a finished run's client may stop.
    retry = RETRY_MS if ended else 1
    body = "".join(_frame(event, retry).encode().decode() for event in events)
    if not events:
        body = f"retry: {retry}\n: no new events\n\n"
    return Response(body, media_type="text/event-stream", headers=SSE_HEADERS)


def _refusal(request: Request, run_id: str) -> JSONResponse | None:
    secret = settings().stream_token_secret
    if not secret:
        return None
    try:
        tokens.verify(secret, run_id, request.query_params.get("token"))
    except tokens.TokenError as exc:
        status = 401 if not request.query_params.get("token") else 403
        return JSONResponse({"detail": str(exc)}, status_code=status)
    return None


async def _has_the_end(run: dict[str, Any], position: int) -> bool:
    """Whether a client at ``position`` of a finished run already has its last event.

    A run's record is final just before its terminal event is stored, so "nothing
    stored after the client's position" may mean the client is early, not done: what
    counts is the event at the position itself, which must be terminal and the last
    one stored. A redriven run has a ``run_failed`` before its end; a client holding
    it is not done if anything is stored after it, or if the record's ``last_seq``
    (the highest seq the run has recorded, written before the terminal event) is past
    it. A client that claims a seq that is not stored (past the end) has everything.
    """
    if position < 1 or run.get("last_seq", 0) > position:
        return False
    found = await asyncio.to_thread(store().events_after, run["run_id"], position - 1, 2)
    if not found:
        return True
    held = found[0]
    return len(found) == 1 and held["seq"] == position and held["type"] in TERMINAL_TYPES


async def stream(request: Request) -> Response:
    """``GET /api/v1/runs/{run_id}/stream``: the run's events, replayed then live."""
    run_id = request.path_params["run_id"]
    refusal = _refusal(request, run_id)
    if refusal is not None:
        return refusal
    try:
        run = await asyncio.to_thread(store().get_run, run_id)
    except NotFoundError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404)
    try:
        position = _position(request)
    except _BadPosition as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    if run.get("status") in FINISHED and await _has_the_end(run, position):
        # The client has everything, the last terminal event included: 204 tells
        # EventSource to stop reconnecting. (A run redriven after this answer is
        # queued or running again, so a later request follows it.)
        return Response(status_code=204)
    if buffered():
        return await _buffered_response(run_id, position)
    heartbeat = float(os.environ.get("STREAM_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS))
    return EventSourceResponse(_frames(run_id, position), ping=heartbeat, headers=SSE_HEADERS,
                               sep=SEP)


def _inline_hashes(page: str, tag: str) -> str:
    """CSP sources that allow exactly the inline ``<tag>`` blocks of ``page``."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
    digests = (hashlib.sha256(block.encode()).digest() for block in blocks)
    return " ".join(f"'sha256-{base64.b64encode(digest).decode()}'" for digest in digests)


# The page shows data from the run (LLM text, error messages), so its policy allows
# only its own inline script and style, and connections back to this origin.
VIEW_POLICY = (
    "default-src 'none'",
    f"script-src {_inline_hashes(VIEW_PAGE, 'script')}",
    f"style-src {_inline_hashes(VIEW_PAGE, 'style')}",
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
)
VIEW_HEADERS = {
    "Content-Security-Policy": "; ".join(VIEW_POLICY),
    # The URL carries the run's token: keep it out of Referer headers and caches.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


async def view(request: Request) -> Response:
    """``GET /api/v1/runs/{run_id}/view``: a page that shows the run's stream live."""
    refusal = _refusal(request, request.path_params["run_id"])
    if refusal is not None:
        return refusal
    return HTMLResponse(VIEW_PAGE, headers=VIEW_HEADERS)


async def health(request: Request) -> JSONResponse:
    """Liveness (the Web Adapter's readiness check uses it too)."""
    return JSONResponse({"status": "ok"})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Close the Redis client with the event loop it was made on."""
    yield
    client = live()
    if client is not None:
        await client.aclose()
        live.cache_clear()


app = Starlette(
    lifespan=lifespan,
    routes=[
        Route("/api/v1/runs/{run_id}/stream", stream),
        Route("/api/v1/runs/{run_id}/view", view),
        Route("/health", health),
    ],
)
