"""Following a run's SSE stream in a terminal: one line per event, with a progress bar."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

BAR_WIDTH = 24
TERMINAL = frozenset({"run_completed", "run_failed"})


def bar(done: int, total: int) -> str:
    """A text progress bar such as ``[######------] 3/6``."""
    filled = BAR_WIDTH * done // total if total else BAR_WIDTH
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total}"


def render(event: dict[str, Any]) -> str:
    """One terminal line for one event."""
    kind = event["type"]
    step = f"{event.get('step_id', '')} ({event['node_type']})" if "step_id" in event else ""
    line = f"{kind:<15} {step:<34} {bar(event['steps_completed'], event['total_steps'])}"
    if "duration_ms" in event:
        line += f"  {event['duration_ms']:.0f} ms"
    if event.get("error"):
        line += f"\n{'':>16}error: {event['error']}"
    return line


def events(client: httpx.Client, stream_url: str) -> Iterator[dict[str, Any]]:
    """A run's events from its SSE stream (the run's ``stream_url``), until the terminal one."""
    with connect_sse(client, "GET", stream_url, timeout=httpx.Timeout(10, read=None)) as source:
        source.response.raise_for_status()
        for sse in source.iter_sse():
            event = json.loads(sse.data)
            yield event
            if event["type"] in TERMINAL:
                return


def watch(
    client: httpx.Client, stream_url: str, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Print every event of the run as it arrives; return the terminal event."""
    last: dict[str, Any] = {}
    for event in events(client, stream_url):
        echo(render(event))
        last = event
    status = last.get("status", "unknown")
    echo(f"run {status} {last.get('steps_completed', 0)}/{last.get('total_steps', 0)}")
    return last
