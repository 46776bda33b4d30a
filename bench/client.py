"""An asynchronous client of the local stack: register, run, and read a run's stream."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "service_health_pipeline.yaml"
# The built-in pipeline checks the stack's own /health at the address it has on :8000.
ORIGINAL_BASE = "http://localhost:8000"
TERMINAL = frozenset({"run_completed", "run_failed"})


def health_pipeline(api: str) -> str:
    """``service_health_pipeline`` with its http step pointed at ``api``'s /health."""
    return WORKFLOW.read_text().replace(ORIGINAL_BASE, api.rstrip("/"))


def ms_between(start: str | None, end: str | None) -> float | None:
    """Milliseconds from ISO time ``start`` to ``end``; None if either is missing."""
    if not start or not end:
        return None
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return delta.total_seconds() * 1000


@dataclass
class RunTiming:
    """One queued run as its client saw it (``perf_counter`` seconds)."""

    run_id: str
    started: float
    posted: float
    ended: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def e2e_ms(self) -> float:
        """POST sent to the terminal event read off the stream."""
        return (self.ended - self.started) * 1000

    @property
    def status(self) -> str | None:
        """The terminal event's status, if the stream ended on one."""
        last = self.events[-1] if self.events else {}
        return last.get("status") if last.get("type") in TERMINAL else None


class StackClient:
    """The API and stream of one local stack.

    Args:
        api: The API's base URL; the stream shares it.
        connections: How many connections the client may hold at once.
    """

    def __init__(self, api: str, connections: int = 32) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx.AsyncClient(base_url=api, timeout=120, limits=limits, trust_env=False)

    async def aclose(self) -> None:
        """Close the connections."""
        await self.http.aclose()

    async def register(self, yaml_content: str) -> str:
        """Register a workflow; its id."""
        response = await self.http.post("/api/v1/workflows", json={"yaml_content": yaml_content})
        response.raise_for_status()
        return str(response.json()["id"])

    async def run_queued(self, workflow_id: str) -> RunTiming:
        """Queue a run and read its stream to the terminal event, timing both."""
        started = time.perf_counter()
        response = await self.http.post(f"/api/v1/runs/{workflow_id}/execute-async",
                                         json={"data": {}})
        posted = time.perf_counter()
        response.raise_for_status()
        timing = RunTiming(response.json()["id"], started, posted)
        timing.events = await self.read_stream(timing.run_id)
        timing.ended = time.perf_counter()
        return timing

    async def run_inline(self, workflow_id: str) -> tuple[float, dict[str, Any]]:
        """One synchronous execute: its round trip in ms and the finished run."""
        started = time.perf_counter()
        response = await self.http.post(f"/api/v1/runs/{workflow_id}/execute", json={"data": {}})
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        return elapsed, response.json()

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """The run record as the API shows it."""
        response = await self.http.get(f"/api/v1/runs/{run_id}")
        response.raise_for_status()
        return dict(response.json())

    async def read_stream(self, run_id: str) -> list[dict[str, Any]]:
        """A run's events off its SSE stream, until the terminal one."""
        events: list[dict[str, Any]] = []
        async for event in self.stream(run_id):
            events.append(event)
        return events

    async def stream(self, run_id: str) -> Any:
        """Yield a run's events as they are read off its stream, until the terminal one."""
        url = f"/api/v1/runs/{run_id}/stream"
        async with self.http.stream("GET", url, headers={"accept": "text/event-stream"}) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                yield event
                if event["type"] in TERMINAL:
                    return
