"""Following a run's events: table replay, Redis hand-over, gaps, and Redis failing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest

from stepstream import events
from stepstream.events import RedisPublisher, follow


class TableStub:
    """The events table's read side, in memory (the real table is tested on the stack).

    ``before_read``, when set, is called with the read's number (from 1) before the
    read answers: a way to land a write between two reads of the reader.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.reads = 0
        self.before_read: Callable[[int], None] | None = None
        # The run record's status, as ``get_run`` answers it.
        self.status = "completed"

    def add(self, event_type: str) -> dict[str, Any]:
        """Store the run's next event, of type ``event_type``; return it."""
        event = {"type": event_type, "run_id": "r", "seq": len(self.rows) + 1}
        self.rows.append(event)
        return event

    def events_after(self, run_id: str, after: int, limit: int = 500) -> list[dict[str, Any]]:
        """As ``Store.events_after``, counting the reads."""
        self.reads += 1
        if self.before_read is not None:
            self.before_read(self.reads)
        return [e for e in self.rows if e["seq"] > after][:limit]

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's record, as far as ``follow`` reads it."""
        return {"run_id": run_id, "status": self.status}


FAILED = ("run_started", "step_started", "step_failed", "run_failed")
REDRIVE = ("run_resumed", "step_started", "step_retrying", "step_completed", "run_completed")


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


def test_follow_without_redis_polls_the_table_until_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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


def test_follow_replays_a_redriven_run_through_its_last_terminal_event() -> None:
    """A run_failed followed by a redrive is passed on; the run_completed after it ends."""
    table = TableStub()
    for kind in FAILED + REDRIVE:
        table.add(kind)

    seen = asyncio.run(_collect(follow(table, "r", 0, None)))

    assert [e["type"] for e in seen] == list(FAILED + REDRIVE)
    assert table.reads == 2  # the replay, and the one question after run_completed


@pytest.mark.parametrize("kind", sorted(events.TERMINAL_TYPES))
def test_follow_ends_at_a_terminal_event_that_nothing_follows_after_one_more_read(
    kind: str,
) -> None:
    """Each terminal type ends the iteration once the table says nothing comes after it."""
    table = TableStub()
    for event_type in ("run_started", kind):
        table.add(event_type)

    seen = asyncio.run(_collect(follow(table, "r", 0, None)))

    assert [e["type"] for e in seen] == ["run_started", kind]
    assert table.reads == 2


@pytest.mark.parametrize("with_redis", [False, True], ids=["table", "redis"])
def test_follow_goes_on_when_a_redrive_lands_just_after_the_terminal_event(
    redis_pair: tuple[Any, Any], with_redis: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redrive stored just after the run_failed in hand is followed to its end.

    Given a run_failed last in hand, when the redrive is stored before the table is
    asked again, then follow yields the redrive's events too, through run_completed.
    """
    monkeypatch.setattr(events, "POLL_INTERVAL_SECONDS", 0.01)
    sync, live = redis_pair
    table, publisher = TableStub(), RedisPublisher(sync)

    def write(kinds: tuple[str, ...]) -> None:
        added = [table.add(kind) for kind in kinds]
        publisher.publish_many("r", [(e["seq"], json.dumps(e)) for e in added])

    write(FAILED)
    # The second read is follow's question after run_failed: the redrive starts just before.
    table.before_read = lambda n: write(REDRIVE[:1]) if n == 2 else None

    async def scenario() -> list[dict[str, Any]]:
        async def rest_of_the_redrive() -> None:
            while table.reads < 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            write(REDRIVE[1:])

        task = asyncio.create_task(rest_of_the_redrive())
        seen = await _collect(follow(table, "r", 0, live if with_redis else None))
        await asyncio.wait_for(task, 1.0)  # a follow that never asked again fails here
        return seen

    seen = asyncio.run(scenario())

    assert [e["type"] for e in seen] == list(FAILED + REDRIVE)
    assert [e["seq"] for e in seen] == list(range(1, len(FAILED + REDRIVE) + 1))


def test_follow_passes_a_terminal_event_in_the_middle_of_a_redis_batch(
    redis_pair: tuple[Any, Any],
) -> None:
    """A run_failed that Redis delivers with the redrive behind it does not end the stream."""
    sync, live = redis_pair
    table, publisher = TableStub(), RedisPublisher(sync)
    first = table.add("run_started")
    publisher.publish("r", first["seq"], json.dumps(first))

    async def scenario() -> list[dict[str, Any]]:
        async def writer() -> None:
            await asyncio.sleep(0.05)
            added = [table.add(kind) for kind in FAILED[1:] + REDRIVE]
            publisher.publish_many("r", [(e["seq"], json.dumps(e)) for e in added])

        task = asyncio.create_task(writer())
        seen = await _collect(follow(table, "r", 0, live))
        await task
        return seen

    seen = asyncio.run(scenario())

    assert [e["type"] for e in seen] == list(FAILED + REDRIVE)


@pytest.mark.parametrize("status", ["queued", "running"])
def test_follow_waits_past_run_failed_while_the_redriven_run_is_queued(status: str) -> None:
    """A run redriven but not yet taken up has run_failed last; following goes on to its end.

    Its record says ``queued`` (the redrive's message not yet delivered) or ``running``
    (taken up, its run_resumed not yet written).
    """
    table = TableStub()
    for kind in FAILED:
        table.add(kind)
    table.status = status

    def executor_takes_it_up(read: int) -> None:
        if read == 4:
            for kind in REDRIVE:
                table.add(kind)
            table.status = "completed"

    table.before_read = executor_takes_it_up

    seen = asyncio.run(_collect(follow(table, "r", 0, None)))

    assert [e["type"] for e in seen] == list(FAILED + REDRIVE)
