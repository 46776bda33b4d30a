"""Figure 2: bursts, runs fired at once through execute-async.

Throughput is runs per second until the last run_completed arrives on its stream.
"""

from __future__ import annotations

import asyncio
import time

from bench.client import RunTiming, StackClient
from bench.stats import Summary, summarize


async def _one_burst(client: StackClient, workflow_id: str, size: int) -> list[RunTiming]:
    timings = await asyncio.gather(*(client.run_queued(workflow_id) for _ in range(size)))
    failed = [t.run_id for t in timings if t.status != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} runs of a burst of {size} did not complete")
    return list(timings)


async def measure(
    client: StackClient, workflow_id: str, size: int, repeats: int
) -> list[Summary]:
    """``repeats`` bursts of ``size`` runs: runs/s of each, and each run's e2e time."""
    rates: list[float] = []
    e2e: list[float] = []
    for _ in range(repeats):
        fired = time.perf_counter()
        timings = await _one_burst(client, workflow_id, size)
        last = max(t.ended for t in timings)
        rates.append(size / (last - fired))
        e2e.extend(t.e2e_ms for t in timings)
        await asyncio.sleep(0.5)
    return [
        summarize(f"burst of {size}: throughput", "runs/s", rates),
        summarize(f"  burst of {size}: e2e per run", "ms", e2e),
    ]
