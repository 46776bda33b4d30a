"""Stream function: an ASGI app that serves a run's events as Server-Sent Events.

Under the AWS Lambda Web Adapter (function URL in ``RESPONSE_STREAM`` mode) and
under uvicorn locally. It replays the stored events after the client's position
(``Last-Event-ID`` or ``?after=``), then follows new ones until the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import cache
from typing import TYPE_CHECKING

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stepstream import NotFoundError, Settings
from stepstream._json import dumps
from stepstream.events import follow
from stepstream.store import Store

if TYPE_CHECKING:
    import redis.asyncio

HEARTBEAT_SECONDS = 15
RETRY_MS = 1_000


@cache
def store() -> Store:
    """The process's store, built on first use from the environment."""
    settings = Settings.from_env()
    return Store(settings.workflows_table, settings.runs_table, settings.events_table)


@cache
def live() -> redis.asyncio.Redis | None:
    """The Redis client for live events, or None when ``REDIS_URL`` is unset."""
    url = Settings.from_env().redis_url
    if not url:
        return None
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url)


def _position(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    return int(raw) if raw.isdigit() else 0


async def _frames(run_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    async for event in follow(store(), run_id, after, live()):
        yield ServerSentEvent(
            data=dumps(event), event=event["type"], id=str(event["seq"]), retry=RETRY_MS
        )


async def stream(request: Request) -> EventSourceResponse | JSONResponse:
    """``GET /api/v1/runs/{run_id}/stream``: the run's events, replayed then live."""
    run_id = request.path_params["run_id"]
    try:
        await asyncio.to_thread(store().get_run, run_id)
    except NotFoundError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404)
    return EventSourceResponse(
        _frames(run_id, _position(request)),
        ping=HEARTBEAT_SECONDS,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


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
        Route("/health", health),
    ]
)
