"""Figure 3: stream delivery lag, from an event written to a connected client reading it.

"Written" is when the events table holds the event; the Redis publish that follows
(when Redis is configured) is part of the delivery.

The bench writes the events itself, through the engine's own ``Store.put_event`` and
``RedisPublisher.publish``, to a run record it made, while its client follows that
run's stream on the stack; both sides read one ``perf_counter``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

from bench.client import StackClient
from bench.stats import Summary, summarize
from stepstream import _json
from stepstream.events import RedisPublisher
from stepstream.runner import now_iso
from stepstream.store import Store

# Pauses between events, drawn at random so that writes never line up with a poll.
PAUSE_SECONDS = (0.01, 0.08)


class _Writer:
    """Writes one run's events as the executor does: table first, then Redis."""

    def __init__(self, env: dict[str, str]) -> None:
        self.store = Store(env["WORKFLOWS_TABLE"], env["RUNS_TABLE"], env["EVENTS_TABLE"])
        redis_url = env.get("REDIS_URL", "")
        self.publisher = RedisPublisher.from_url(redis_url) if redis_url else None
        self.run_id = str(uuid.uuid4())
        self.seq = 0

    def create_run(self, total: int) -> None:
        at = now_iso()
        self.store.put_run({
            "run_id": self.run_id, "workflow_id": "bench", "workflow_name": "bench_lag",
            "status": "running", "trigger_data": {}, "trigger_headers": {}, "step_order": [],
            "yaml_content": "", "total_steps": total, "steps_completed": 0,
            "created_at": at, "started_at": at,
        })

    def write(self, event_type: str) -> float:
        """Write the next event; the ``perf_counter`` when the table holds it.

        The Redis publish that follows is part of the delivery being measured.
        """
        self.seq += 1
        event: dict[str, Any] = {"type": event_type, "run_id": self.run_id, "seq": self.seq,
                                 "timestamp": now_iso(), "status": "running"}
        text = _json.dumps(event)
        self.store.put_event(self.run_id, self.seq, event_type, text)
        stored = time.perf_counter()
        if self.publisher is not None:
            self.publisher.publish(self.run_id, self.seq, text)
        return stored


async def _read(client: StackClient, run_id: str, received: dict[int, float],
                first: asyncio.Event) -> None:
    async for event in client.stream(run_id):
        received[event["seq"]] = time.perf_counter()
        first.set()


async def _lags(client: StackClient, env: dict[str, str], events: int) -> list[float]:
    writer = _Writer(env)
    await asyncio.to_thread(writer.create_run, events)
    received: dict[int, float] = {}
    first = asyncio.Event()
    reader = asyncio.create_task(_read(client, writer.run_id, received, first))
    # The first event only proves the client is following; it is not timed.
    await asyncio.to_thread(writer.write, "run_started")
    await asyncio.wait_for(first.wait(), timeout=30)
    rng = random.Random(3)
    written: dict[int, float] = {}
    for n in range(events):
        await asyncio.sleep(rng.uniform(*PAUSE_SECONDS))
        kind = "run_completed" if n == events - 1 else "step_started"
        seq = writer.seq + 1
        written[seq] = await asyncio.to_thread(writer.write, kind)
    await asyncio.wait_for(reader, timeout=30)
    return [(received[seq] - at) * 1000 for seq, at in written.items()]


async def measure(client: StackClient, env: dict[str, str], label: str, events: int) -> Summary:
    """The delivery lag of ``events`` events on one followed stream."""
    return summarize(f"stream delivery lag ({label})", "ms", await _lags(client, env, events))
