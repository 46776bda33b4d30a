"""Counting what a run asks of AWS and Redis, at the client side.

botocore's event hooks on each boto3 client see every call with its parameters and
its answer; DynamoDB write units follow from the items written (ceil(KB) per item,
twice that in a transaction) and read units from the items read (4 KB units, half
for eventually consistent reads). An update is billed on the larger item image,
which for our SET-only updates is the one after it: the counter reads it back with
a client of its own, whose calls are not counted.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes of one typed DynamoDB value, by DynamoDB's published sizing rules."""
    (kind, inner), = value.items()
    if kind in ("S", "B"):
        return len(inner.encode() if isinstance(inner, str) else inner)
    if kind == "N":
        digits = len(inner.lstrip("-").replace(".", "").strip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    return sum(len(str(v)) for v in inner)  # SS, NS, BS: close enough for our items


def item_size(item: dict[str, Any]) -> int:
    """Bytes of a typed DynamoDB item: attribute names plus values."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    """Write request units of writing one item of ``size`` bytes."""
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    """Read request units of reading ``size`` bytes in one request."""
    units = max(1, math.ceil(size / 4096))
    return units if consistent else units / 2


class Tally:
    """Requests and units, by component, service and operation; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.units: Counter[str] = Counter()
        self.enabled = True

    def add(self, component: str, service: str, operation: str, **units: float) -> None:
        """Count one request, and any units it consumed (nothing while not ``enabled``)."""
        if not self.enabled:
            return
        with self.lock:
            self.requests[(component, service, operation)] += 1
            for name, amount in units.items():
                self.units[name] += amount

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self.lock:
            self.requests.clear()
            self.units.clear()

    def total(self, service: str, operations: tuple[str, ...] | None = None) -> int:
        """Requests to ``service`` (only ``operations``, when given)."""
        return sum(n for (_c, s, op), n in self.requests.items()
                   if s == service and (operations is None or op in operations))


DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem",
                   "TransactWriteItems")


class BotoCounter:
    """Counts the calls of boto3 clients into a ``Tally``.

    Args:
        tally: Where the counts go.
        reader: An uncounted DynamoDB client, to size items after updates.
    """

    def __init__(self, tally: Tally, reader: Any) -> None:
        self.tally = tally
        self.reader = reader

    def attach(self, client: Any, component: str) -> None:
        """Count every call ``client`` makes, as ``component``'s."""
        events = client.meta.events

        def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            context["bench_params"] = dict(params)

        def count(model: Any, parsed: dict[str, Any], context: dict[str, Any],
                  **_: Any) -> None:
            self._count(component, client.meta.service_model.service_name, model.name,
                        context.get("bench_params", {}), parsed)

        events.register("before-parameter-build", remember)
        events.register("after-call", count)

    def _count(self, component: str, service: str, operation: str,
               params: dict[str, Any], parsed: dict[str, Any]) -> None:
        if not self.tally.enabled:
            return
        if service == "sqs" and operation == "ReceiveMessage" and not parsed.get("Messages"):
            operation = "ReceiveMessage (empty)"
        units: dict[str, float] = {}
        if service == "dynamodb":
            units = self._units(operation, params, parsed)
        self.tally.add(component, service, operation, **units)

    def _units(self, operation: str, params: dict[str, Any],
               parsed: dict[str, Any]) -> dict[str, float]:
        consistent = bool(params.get("ConsistentRead"))
        if operation == "GetItem":
            return {"rru": read_units(item_size(parsed.get("Item", {})), consistent)}
        if operation == "Query":
            size = sum(item_size(item) for item in parsed.get("Items", []))
            return {"rru": read_units(size, consistent)}
        if operation == "PutItem":
            return {"wru": write_units(item_size(params["Item"]))}
        if operation == "UpdateItem":
            return {"wru": write_units(self._size_now(params["TableName"], params["Key"]))}
        if operation == "BatchWriteItem":
            puts = [r["PutRequest"]["Item"] for rs in params["RequestItems"].values()
                    for r in rs if "PutRequest" in r]
            return {"wru": sum(write_units(item_size(item)) for item in puts)}
        if operation == "TransactWriteItems":
            return {"wru": 2 * sum(self._transact_size(i) for i in params["TransactItems"])}
        return {}

    def _transact_size(self, action: dict[str, Any]) -> int:
        (kind, spec), = action.items()
        if kind == "Put":
            return write_units(item_size(spec["Item"]))
        if kind == "Update":
            return write_units(self._size_now(spec["TableName"], spec["Key"]))
        return 1

    def _size_now(self, table: str, key: dict[str, Any]) -> int:
        item = self.reader.get_item(TableName=table, Key=key, ConsistentRead=True)
        return item_size(item.get("Item", key))


class RedisCounter:
    """Counts round trips and commands of every Redis client in this process.

    Synchronous clients are the executor's publisher; asynchronous ones the stream's.
    """

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def install(self) -> None:
        """Wrap redis-py's command and pipeline paths, sync and asyncio."""
        import redis.asyncio.client as async_client
        import redis.client as sync_client

        self._wrap_sync(sync_client.Redis, "execute_command", "executor", single=True)
        self._wrap_sync(sync_client.Pipeline, "execute", "executor", single=False)
        self._wrap_async(async_client.Redis, "execute_command", "stream", single=True)
        self._wrap_async(async_client.Pipeline, "execute", "stream", single=False)

    def _record(self, component: str, target: Any, args: tuple[Any, ...], single: bool) -> None:
        if single:
            self.tally.add(component, "redis", str(args[0]).upper(), commands=1)
        else:
            self.tally.add(component, "redis", "pipeline", commands=len(target.command_stack))

    def _wrap_sync(self, cls: Any, name: str, component: str, single: bool) -> None:
        original = getattr(cls, name)
        counter = self

        def counted(target: Any, *args: Any, **kwargs: Any) -> Any:
            counter._record(component, target, args, single)
            return original(target, *args, **kwargs)

        setattr(cls, name, counted)

    def _wrap_async(self, cls: Any, name: str, component: str, single: bool) -> None:
        original = getattr(cls, name)
        counter = self

        async def counted(target: Any, *args: Any, **kwargs: Any) -> Any:
            counter._record(component, target, args, single)
            return await original(target, *args, **kwargs)

        setattr(cls, name, counted)
