"""A run's events: where they are written and how a reader follows them.

DynamoDB's events table is the record; Redis, when configured, is the fast path
for readers following a live run. Every event goes to DynamoDB first and to Redis
second, so anything a reader sees on Redis is also stored. Each run has a Redis
stream whose entry ids are ``0-<seq>``: a reader that replayed the table up to
``seq = n`` reads Redis strictly after ``0-n``, so the hand-over from replay to
live neither misses nor doubles an event. If Redis lost an event (a writer died
between the two writes), the gap in ``seq`` sends the reader back to the table.

Event types and their fields (``type``, ``run_id``, ``seq`` and ``timestamp`` on all):

==============  ===============================================================
run_started     status, steps_completed, total_steps, progress
step_started    step_id, node_type, status, iteration, steps_completed, total_steps,
                progress
step_progress   ... as step_started, plus text (an llm step's answer so far, coalesced)
step_completed  ... as step_started, plus output (bounded) and duration_ms
step_failed     ... as step_started, plus error and duration_ms
step_skipped    step_id, node_type, status, steps_completed, total_steps, progress
step_retrying   ... as step_started (status retrying), plus attempt (the one that
                failed, from 1), max_attempts, delay_seconds, error and error_kind
run_resumed     status (running), reason (recovered, continuation, retry_wait or
                redrive), attempt, steps_completed, total_steps, progress
run_completed   status, steps_completed, total_steps, progress, error (null)
run_failed      status, steps_completed, total_steps, progress, error
run_cancelled   status, steps_completed, total_steps, progress, error (null or why)
==============  ===============================================================

The last three are terminal, but a terminal event need not be a run's last one: a
failed run that is redriven goes on in the same log (``run_failed``, then
``run_resumed`` with reason ``redrive``, and so on to a new terminal event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from stepstream import _json

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from stepstream.store import Store

logger = logging.getLogger(__name__)

EVENT_TYPES = (
    "run_started",
    "step_started",
    "step_progress",
    "step_completed",
    "step_failed",
    "step_skipped",
    "step_retrying",
    "run_resumed",
    "run_completed",
    "run_failed",
    "run_cancelled",
)
TERMINAL_TYPES = frozenset({"run_completed", "run_failed", "run_cancelled"})
# A run's Redis stream lives this long after its last event; the table keeps all.
REDIS_RETENTION_SECONDS = 24 * 3600
REDIS_MAX_EVENTS = 10_000
POLL_INTERVAL_SECONDS = 0.05
POLL_MAX_INTERVAL_SECONDS = 1.0
REDIS_BLOCK_MS = 1_000


def redis_key(run_id: str) -> str:
    """The Redis stream that carries ``run_id``'s live events."""
    return f"stepstream:events:{run_id}"


class RedisPublisher:
    """Writes events to each run's Redis stream (the live path).

    Args:
        client: A synchronous Redis client.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str) -> RedisPublisher:
        """A publisher connected to ``url``."""
        import redis

        return cls(redis.Redis.from_url(url))

    def publish(self, run_id: str, seq: int, data: str) -> None:
        """Append one event; a failure is logged, since the table already holds it."""
        self.publish_many(run_id, [(seq, data)])

    def publish_many(self, run_id: str, events: list[tuple[int, str]]) -> None:
        """Append ``(seq, data)`` events, in order, in one round trip; failures are logged."""
        import redis

        key = redis_key(run_id)
        pipe = self.client.pipeline(transaction=False)
        for seq, data in events:
            pipe.xadd(key, {"data": data}, id=f"0-{seq}", maxlen=REDIS_MAX_EVENTS,
                      approximate=True)
        pipe.expire(key, REDIS_RETENTION_SECONDS)
        try:
            pipe.execute()
        except redis.RedisError:
            logger.warning("redis publish failed", exc_info=True, extra={"run_id": run_id})


async def _from_table(store: Store, run_id: str, after: int) -> list[dict[str, Any]]:
    return await asyncio.to_thread(store.events_after, run_id, after)


async def _from_redis(
    client: redis.asyncio.Redis, run_id: str, after: int
) -> list[dict[str, Any]] | None:
    """Live events after ``after``; None when they do not follow on (go to the table)."""
    import redis

    try:
        answer = await client.xread({redis_key(run_id): f"0-{after}"}, block=REDIS_BLOCK_MS)
    except redis.RedisError:
        # Redis is the fast path only: without it, the table still has every event.
        logger.warning("redis read failed; following the table", extra={"run_id": run_id})
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
        return None
    events: list[dict[str, Any]] = []
    for _key, entries in answer or []:
        for _entry_id, fields in entries:
            event = _json.loads(fields[b"data"])
            if event["seq"] != after + len(events) + 1:
                return None
            events.append(event)
    return events


async def _redriven(store: Store, run_id: str) -> bool:
    """Whether a run whose last event is terminal is going on again (a redrive)."""
    run = await asyncio.to_thread(store.get_run, run_id)
    return run.get("status") in ("queued", "running")


async def follow(
    store: Store, run_id: str, after: int = 0, live: redis.asyncio.Redis | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Yield ``run_id``'s events with ``seq > after`` in order, until the run's end.

    Replays the table, then follows new events on Redis (``live``) or, without
    Redis, by polling the table every ``POLL_INTERVAL_SECONDS``, backing off to
    ``POLL_MAX_INTERVAL_SECONDS`` while nothing happens.

    The end is a terminal event that nothing follows. A redriven run goes on after
    its ``run_failed``, so when a terminal event is the last one in hand, the table
    is asked what comes after it: anything is the next batch; nothing ends the
    iteration, unless the run's record says it is queued or running again (redriven,
    its next events not written yet), when following goes on. A run redriven later
    still, after the iteration ended, is for the reader's next request (the stream
    app tells a client at the end by a 204).
    """
    events = await _from_table(store, run_id, after)
    idle = POLL_INTERVAL_SECONDS
    while True:
        for event in events:
            yield event
            after = event["seq"]
        if events and events[-1]["type"] in TERMINAL_TYPES:
            events = await _from_table(store, run_id, after)
            if events:
                continue
            if not await _redriven(store, run_id):
                return
        if live is not None:
            events = await _from_redis(live, run_id, after)
            if events:
                continue
            # A gap, or a quiet second: the table is the record, ask it.
        elif events:
            idle = POLL_INTERVAL_SECONDS
        else:
            # Polling backs off while a step takes its time, up to a second.
            await asyncio.sleep(idle)
            idle = min(idle * 1.5, POLL_MAX_INTERVAL_SECONDS)
        events = await _from_table(store, run_id, after)
