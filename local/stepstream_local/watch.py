"""Following a run's SSE stream in a terminal: one line per event, with a progress bar.

The follower survives a dropped connection: it reconnects with ``Last-Event-ID`` set
to the last event it printed, so nothing is shown twice or skipped, and it asks the
API for a fresh ``stream_url`` when the old one's token has expired. In the stream's
buffered mode every response ends early by design; that is the same reconnect.

A terminal event is not always a run's last: a failed run that was redriven goes on
after its ``run_failed``. The server ends a response on a terminal event only when
nothing follows it, so the follower stops when a response ends right after a terminal
event, or when the server answers 204; a terminal event in the middle of a response
(a redriven run replayed from the start) is printed and followed by the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

from stepstream.events import TERMINAL_TYPES

BAR_WIDTH = 24
# The exit code of a watch, by the run's last event; 2 when the watch saw no end.
EXIT_CODES = {"run_completed": 0, "run_failed": 1, "run_cancelled": 3}
MAX_BACKOFF_SECONDS = 5.0
# An error shown on a one-line event is cut to this many characters.
ERROR_WIDTH = 100
RESUME_REASONS = {
    "recovered": "taken over after its executor stopped",
    "continuation": "continued in a new invocation",
    "retry_wait": "woke up after a retry wait",
    "redrive": "redriven after failing",
}


def bar(done: int, total: int) -> str:
    """A text progress bar such as ``[######------] 3/6``."""
    filled = BAR_WIDTH * done // total if total else BAR_WIDTH
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total}"


def _short(text: Any) -> str:
    """``text`` on one line, cut to ``ERROR_WIDTH`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 1] + "…"


def _retrying(event: dict[str, Any]) -> str:
    attempt = f"attempt {event.get('attempt', '?')}/{event.get('max_attempts', '?')}"
    parts = (event.get("error_kind"), _short(event.get("error") or ""))
    why = ": ".join(part for part in parts if part)
    failed = f"{attempt} failed ({why})" if why else f"{attempt} failed"
    delay = float(event.get("delay_seconds") or 0)
    return (f"{'step_retrying':<15} ↻ {event.get('step_id', '')} {failed}; "
            f"retrying in {delay:.1f}s")


def _resumed(event: dict[str, Any]) -> str:
    reason = event.get("reason", "")
    label = f"{RESUME_REASONS.get(reason, reason)} (attempt {event.get('attempt', '?')})"
    progress = bar(event["steps_completed"], event["total_steps"])
    return f"{'run_resumed':<15} {label:<34} {progress}"


def _cancelled(event: dict[str, Any]) -> str:
    label = f"cancelled: {_short(event['error'])}" if event.get("error") else "cancelled"
    progress = bar(event["steps_completed"], event["total_steps"])
    return f"{'run_cancelled':<15} {label:<34} {progress}"


def render(event: dict[str, Any]) -> str:
    """One terminal line for one event (two for a failure: its error goes below)."""
    kind = event["type"]
    if kind == "step_progress":
        return f"{'':>16}{event.get('step_id', '')}: {event.get('text', '')!r}"
    special = _SPECIAL.get(kind)
    if special is not None:
        return special(event)
    step = f"{event.get('step_id', '')} ({event['node_type']})" if "step_id" in event else ""
    if event.get("iteration", 1) > 1:
        step += f" #{event['iteration']}"
    line = f"{kind:<15} {step:<34} {bar(event['steps_completed'], event['total_steps'])}"
    if "duration_ms" in event:
        line += f"  {event['duration_ms']:.0f} ms"
    if event.get("error"):
        line += f"\n{'':>16}error: {event['error']}"
    return line


_SPECIAL: dict[str, Callable[[dict[str, Any]], str]] = {
    "step_retrying": _retrying,
    "run_resumed": _resumed,
    "run_cancelled": _cancelled,
}


class Follower:
    """Reads one run's events, reconnecting until the run's end.

    The end is a 204, or a response that ends right after a terminal event (see the
    module's docstring); a response cut in the middle is resumed in a new one.

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
        """Every event after ``last_seq``, in order and once each, until the run's end."""
        backoff = 0.1
        while True:
            last_type = ""
            try:
                for event in self._connection():
                    backoff = 0.1
                    last_type = event["type"]
                    yield event
            except _Finished:
                return
            except (httpx.TransportError, httpx.HTTPStatusError):
                # Cut off, perhaps right after a terminal event: the next request says.
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            else:
                if last_type in TERMINAL_TYPES:
                    return
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
    """The process exit code for a run that ended with event ``last`` (``EXIT_CODES``)."""
    return EXIT_CODES.get(last.get("type", ""), 2)
