"""Following a run's SSE stream in a terminal: one line per event, with a progress bar.

The follower survives a dropped connection: it reconnects with ``Last-Event-ID`` set
to the last event it printed, so nothing is shown twice or skipped, and it asks the
API for a fresh ``stream_url`` when the old one's token has expired. In the stream's
buffered mode every response ends early by design; that is the same reconnect.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

BAR_WIDTH = 24
TERMINAL = frozenset({"run_completed", "run_failed", "run_cancelled"})
EXIT_CODES = {"run_completed": 0, "run_failed": 1, "run_cancelled": 3}
MAX_BACKOFF_SECONDS = 5.0


def bar(done: int, total: int) -> str:
    """A text progress bar such as ``[######------] 3/6``."""
    filled = BAR_WIDTH * done // total if total else BAR_WIDTH
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total}"


def render(event: dict[str, Any]) -> str:
    """One terminal line for one event."""
    kind = event["type"]
    if kind == "step_progress":
        return f"{'':>16}{event.get('step_id', '')}: {event.get('text', '')!r}"
    step = f"{event.get('step_id', '')} ({event['node_type']})" if "step_id" in event else ""
    if event.get("iteration", 1) > 1:
        step += f" #{event['iteration']}"
    line = f"{kind:<15} {step:<34} {bar(event['steps_completed'], event['total_steps'])}"
    if "duration_ms" in event:
        line += f"  {event['duration_ms']:.0f} ms"
    if event.get("error"):
        line += f"\n{'':>16}error: {event['error']}"
    return line


class Follower:
    """Reads one run's events, reconnecting until its terminal event.

    Args:
        client: The HTTP client (its base URL is the API, for fresh stream URLs).
        run_id: The run.
        stream_url: Where to start; fetched from the API when None.
    """

    def __init__(self, client: httpx.Client, run_id: str, stream_url: str | None = None):
        self.client = client
        self.run_id = run_id
        self.stream_url = stream_url
        self.last_seq = 0
        self.reconnects = 0

    def _fresh_url(self) -> str:
        response = self.client.get(f"/api/v1/runs/{self.run_id}")
        response.raise_for_status()
        return response.json()["stream_url"]

    def _connection(self) -> Iterator[dict[str, Any]]:
        """The events of one connection; returns when the server ends it."""
        url = self.stream_url or self._fresh_url()
        headers = {"Last-Event-ID": str(self.last_seq)} if self.last_seq else {}
        timeout = httpx.Timeout(10, read=60)
        with connect_sse(self.client, "GET", url, headers=headers, timeout=timeout) as source:
            if source.response.status_code in (401, 403):
                self.stream_url = None  # the token expired: ask the API for a new URL
                return
            if source.response.status_code == 204:
                raise _Finished
            source.response.raise_for_status()
            for sse in source.iter_sse():
                event = json.loads(sse.data)
                if event["seq"] > self.last_seq:
                    self.last_seq = event["seq"]
                    yield event

    def events(self) -> Iterator[dict[str, Any]]:
        """Every event after ``last_seq``, in order and once each, until the terminal one."""
        backoff = 0.1
        while True:
            try:
                for event in self._connection():
                    backoff = 0.1
                    yield event
                    if event["type"] in TERMINAL:
                        return
            except _Finished:
                return
            except (httpx.TransportError, httpx.HTTPStatusError):
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            self.reconnects += 1


class _Finished(Exception):
    """The server says the client already has every event (204)."""


def watch(
    client: httpx.Client,
    run_id: str,
    stream_url: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Print every event of the run as it arrives; return the last event seen."""
    last: dict[str, Any] = {}
    for event in Follower(client, run_id, stream_url).events():
        echo(render(event))
        last = event
    status = last.get("status", "unknown")
    echo(f"run {status} {last.get('steps_completed', 0)}/{last.get('total_steps', 0)}")
    return last


def exit_code(last: dict[str, Any]) -> int:
    """The process exit code for a run that ended with event ``last``."""
    return EXIT_CODES.get(last.get("type", ""), 2)
