"""Figure 1: one run at a time, queued and inline.

Queued: execute-async, timed by the client until run_completed is read off the stream,
with the server's own view of each run (queue wait, executor time). Inline: the sync
execute round trip.
"""

from __future__ import annotations

import asyncio
import random

from bench.client import StackClient, ms_between
from bench.stats import Summary, summarize

WARMUP = 3
# A small random pause between runs, so they never phase-lock with the queue's long poll.
PAUSE_SECONDS = (0.005, 0.05)


async def _queued(client: StackClient, workflow_id: str, runs: int) -> list[Summary]:
    rng = random.Random(6)
    samples: dict[str, list[float]] = {"e2e": [], "post": [], "queue": [], "executor": []}
    for n in range(WARMUP + runs):
        timing = await client.run_queued(workflow_id)
        if timing.status != "completed":
            raise RuntimeError(f"run {timing.run_id} ended {timing.status}")
        if n >= WARMUP:
            record = await client.get_run(timing.run_id)
            samples["e2e"].append(timing.e2e_ms)
            samples["post"].append((timing.posted - timing.started) * 1000)
            samples["queue"].append(ms_between(record["created_at"], record["started_at"]))
            samples["executor"].append(ms_between(record["started_at"], record["completed_at"]))
        await asyncio.sleep(rng.uniform(*PAUSE_SECONDS))
    return [
        summarize("e2e execute-async -> run_completed", "ms", samples["e2e"]),
        summarize("  POST execute-async", "ms", samples["post"]),
        summarize("  queue wait (server)", "ms", samples["queue"]),
        summarize("  executor time (server)", "ms", samples["executor"]),
    ]


async def _inline(client: StackClient, workflow_id: str, runs: int) -> list[Summary]:
    round_trips: list[float] = []
    server: list[float] = []
    for n in range(WARMUP + runs):
        elapsed, run = await client.run_inline(workflow_id)
        if run["status"] != "completed":
            raise RuntimeError(f"run {run['id']} ended {run['status']}")
        if n >= WARMUP:
            round_trips.append(elapsed)
            server.append(ms_between(run["started_at"], run["completed_at"]))
    return [
        summarize("sync execute round trip", "ms", round_trips),
        summarize("  run time (server)", "ms", server),
    ]


async def measure(client: StackClient, workflow_id: str, runs: int) -> list[Summary]:
    """Figure 1's rows: ``runs`` queued runs, then ``runs`` inline ones, one at a time."""
    return await _queued(client, workflow_id, runs) + await _inline(client, workflow_id, runs)
