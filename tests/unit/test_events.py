"""Following a run's events: table replay, Redis hand-over, gaps, and Redis failing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import fakeredis
import pytest
from stepstream import events
from stepstream.events import RedisPublisher, follow


class TableStub:
    """The events table's read side, in memory (the real table is tested on the stack)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.reads = 0

    def add(self, event_type: str) -> dict[str, Any]:
        event = {"type": event_type, "run_id": "r", "seq": len(self.rows) + 1}
        self.rows.append(event)
        return event

    def events_after(self, run_id: str, after: int, limit: int = 500) -> list[dict[str, Any]]:
        self.reads += 1
        return [e for e in self.rows if e["seq"] > after][:limit]


async def _collect(source: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
    async def drain() -> list[dict[str, Any]]:
        return [event async for event in source]

    return await asyncio.wait_for(drain(), timeout)


@pytest.fixture
def redis_pair() -> tuple[Any, Any]:
    """A sync client (the publisher's) and an async one (the reader's) on one fake server."""
    server = fakeredis.FakeServer()
    return (fakeredis.FakeRedis(server=server),
            fakeredis.aioredis.FakeRedis(server=server))


def test_follow_hands_over_from_table_to_redis_without_gap_or_repeat(
    redis_pair: tuple[Any, Any],
) -> None:
    """Events written while the reader switches from replay to Redis arrive once each."""
    sync, live = redis_pair
    table, publisher = TableStub(), RedisPublisher(sync)
    for kind in ("run_started", "step_started"):
        event = table.add(kind)
        publisher.publish("r", event["seq"], json.dumps(event))

    async def scenario() -> list[dict[str, Any]]:
        async def writer() -> None:
            for kind in ("step_completed", "run_completed"):
                await asyncio.sleep(0.05)
                event = table.add(kind)
                publisher.publish("r", event["seq"], json.dumps(event))

        task = asyncio.create_task(writer())
        seen = await _collect(follow(table, "r", 0, live))
        await task
        return seen

    seen = asyncio.run(scenario())

    assert [e["seq"] for e in seen] == [1, 2, 3, 4]


def test_follow_reads_the_table_when_redis_lost_an_event(redis_pair: tuple[Any, Any]) -> None:
    """A seq missing from Redis (a writer died between the two writes) comes from the table."""
    sync, live = redis_pair
    table, publisher = TableStub(), RedisPublisher(sync)
    table.add("run_started")
    lost = table.add("step_started")  # in the table, never published
    done = table.add("run_completed")
    publisher.publish("r", done["seq"], json.dumps(done))

    seen = asyncio.run(_collect(follow(table, "r", 0, live)))

    assert [e["seq"] for e in seen] == [1, lost["seq"], done["seq"]]


def test_follow_without_redis_polls_the_table_until_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Redis: the table is polled, backing off, until the terminal event."""
    monkeypatch.setattr(events, "POLL_INTERVAL_SECONDS", 0.01)
    table = TableStub()
    table.add("run_started")

    async def scenario() -> list[dict[str, Any]]:
        async def writer() -> None:
            await asyncio.sleep(0.1)
            table.add("run_completed")

        task = asyncio.create_task(writer())
        seen = await _collect(follow(table, "r", 0, None))
        await task
        return seen

    seen = asyncio.run(scenario())

    assert [e["type"] for e in seen] == ["run_started", "run_completed"]
    assert 2 < table.reads < 30


def test_follow_falls_back_to_the_table_when_redis_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis refusing reads mid-stream costs latency, not events."""
    import redis.asyncio

    monkeypatch.setattr(events, "POLL_INTERVAL_SECONDS", 0.01)
    table = TableStub()
    table.add("run_started")
    unreachable = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)

    async def scenario() -> list[dict[str, Any]]:
        async def writer() -> None:
            await asyncio.sleep(0.1)
            table.add("run_completed")

        task = asyncio.create_task(writer())
        seen = await _collect(follow(table, "r", 0, unreachable))
        await task
        await unreachable.aclose()
        return seen

    seen = asyncio.run(scenario())

    assert [e["type"] for e in seen] == ["run_started", "run_completed"]


def test_publisher_keeps_a_bounded_expiring_stream_per_run(redis_pair: tuple[Any, Any]) -> None:
    """Each run's Redis stream has ids 0-<seq> and an expiry; the table keeps the record."""
    sync, _live = redis_pair
    publisher = RedisPublisher(sync)

    for seq in (1, 2, 3):
        publisher.publish("r", seq, json.dumps({"seq": seq}))

    entries = sync.xrange(events.redis_key("r"))
    assert [entry_id.decode() for entry_id, _ in entries] == ["0-1", "0-2", "0-3"]
    assert 0 < sync.ttl(events.redis_key("r")) <= events.REDIS_RETENTION_SECONDS
