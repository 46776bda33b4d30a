"""Figure 6: what one service_health_pipeline run asks of storage, and what it costs.

``python -m bench.cost`` runs in a process of its own: a local stack in-process with
every boto3 client and Redis client counted (``bench.counting``), one warm-up run,
then ``RUNS`` queued runs counted one at a time. It prints one JSON line: requests per
run by component, service and operation, units, invocation durations, and the cost
per million steps at the list prices below.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections import defaultdict
from typing import Any

from bench.counting import DYNAMODB_WRITES, BotoCounter, RedisCounter, Tally

RUNS = 5
STEPS_PER_RUN = 6

# AWS on-demand list prices, us-east-1, x86, after free tiers; set on 2026-12-03
# (DynamoDB's are the November 2024 on-demand prices). Check them before quoting.
PRICES_READ_ON = "2026-12-03"
PRICES = {
    "dynamodb_write_request_unit": 0.625e-6,
    "dynamodb_read_request_unit": 0.125e-6,
    "sqs_request": 0.40e-6,  # standard queue, per 64 KB chunk
    "lambda_request": 0.20e-6,
    "lambda_gb_second": 0.0000166667,
    "step_functions_standard_transition": 25.0e-6,
}
# MemorySize in template.yaml's Globals (every function uses it).
LAMBDA_MEMORY_GB = 512 / 1024


class _Invocations:
    """Durations of function invocations, by function and route."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.durations: dict[str, list[float]] = defaultdict(list)
        self.enabled = True

    def install(self) -> None:
        from stepstream_local.runtime import LocalFunction

        invoke = LocalFunction.invoke
        invocations = self

        def timed(function: LocalFunction, event: dict[str, Any]) -> Any:
            started = time.perf_counter()
            try:
                return invoke(function, event)
            finally:
                invocations.add(function.logical_id, event, time.perf_counter() - started)

        LocalFunction.invoke = timed  # type: ignore[method-assign]

    def add(self, function: str, event: dict[str, Any], seconds: float) -> None:
        if not self.enabled:
            return
        label = f"{function} /health" if event.get("rawPath") == "/health" else function
        with self.lock:
            self.durations[label].append(seconds)

    def reset(self) -> None:
        with self.lock:
            self.durations.clear()

    def wait_for(self, function: str, count: int) -> None:
        """Wait (up to 10 s) until ``function`` has returned ``count`` times."""
        deadline = time.monotonic() + 10
        while len(self.durations[function]) < count and time.monotonic() < deadline:
            time.sleep(0.01)


def _attach(stack: Any, counter: BotoCounter) -> None:
    """Count the clients of every function and of the SQS event source."""
    api, executor, stream = (sys.modules[name] for name in
                             ("api_handler", "executor_handler", "stream_app"))
    for component, engine in (("api", api.engine()), ("executor", executor.engine())):
        counter.attach(engine.store.client, component)
        counter.attach(engine.sqs, component)
    counter.attach(stream.store().client, "stream")
    for poller in stack.pollers:
        counter.attach(poller.sqs, "event source")


async def _one_run(client: Any, workflow_id: str) -> float:
    """One queued run; how long its stream was open (the stream function's duration)."""
    timing = await client.run_queued(workflow_id)
    if timing.status != "completed":
        raise RuntimeError(f"run {timing.run_id} ended {timing.status}")
    return timing.ended - timing.posted


def _settle(tally: Tally, runs: int) -> None:
    """Wait until the event source deleted every message (it does so after the run)."""
    deadline = time.monotonic() + 10
    while tally.total("sqs", ("DeleteMessageBatch",)) < runs and time.monotonic() < deadline:
        time.sleep(0.02)


async def _counted_runs(api: str, tally: Tally, invocations: _Invocations) -> list[float]:
    from bench.client import StackClient, health_pipeline

    client = StackClient(api)
    try:
        workflow_id = await client.register(health_pipeline(api))
        await _one_run(client, workflow_id)
        await asyncio.to_thread(_settle, tally, 1)
        # Durations come from uncounted runs: counting reads items back, which takes time.
        tally.enabled = False
        invocations.reset()
        streams = []
        for n in range(RUNS):
            streams.append(await _one_run(client, workflow_id))
            await asyncio.to_thread(invocations.wait_for, "ExecutorFunction", n + 1)
        invocations.enabled = False
        # The event source deletes the last timed run's message after the run ends.
        await asyncio.sleep(0.5)
        tally.reset()
        tally.enabled = True
        for n in range(RUNS):
            await _one_run(client, workflow_id)
            await asyncio.to_thread(_settle, tally, n + 1)
        return streams
    finally:
        await client.aclose()


def _per_run(tally: Tally) -> dict[str, Any]:
    requests = {" ".join(key): n / RUNS for key, n in sorted(tally.requests.items())
                if "(empty)" not in key[2]}
    units = {name: amount / RUNS for name, amount in tally.units.items()}
    return {"requests": requests, "units": units,
            "dynamodb_requests": tally.total("dynamodb") / RUNS,
            "dynamodb_writes": tally.total("dynamodb", DYNAMODB_WRITES) / RUNS,
            "sqs_requests": (tally.total("sqs") - tally.total(
                "sqs", ("ReceiveMessage (empty)",))) / RUNS,
            "redis_round_trips": tally.total("redis") / RUNS}


def price_per_million_steps(per_run: dict[str, Any], gb_seconds: float,
                            invocations: float) -> dict[str, float]:
    """Dollars per million steps, by item, for runs of ``STEPS_PER_RUN`` steps."""
    runs = 1e6 / STEPS_PER_RUN
    items = {
        "dynamodb writes": per_run["units"].get("wru", 0) * PRICES["dynamodb_write_request_unit"],
        "dynamodb reads": per_run["units"].get("rru", 0) * PRICES["dynamodb_read_request_unit"],
        "sqs": per_run["sqs_requests"] * PRICES["sqs_request"],
        "lambda requests": invocations * PRICES["lambda_request"],
        "lambda gb-seconds": gb_seconds * PRICES["lambda_gb_second"],
    }
    priced = {name: dollars * runs for name, dollars in items.items()}
    priced["total"] = sum(priced.values())
    priced["step functions standard"] = 1e6 * PRICES["step_functions_standard_transition"]
    return priced


def _lambda_use(invocations: _Invocations, streams: list[float]) -> tuple[float, float, dict]:
    """GB-seconds and invocations per run, billed per ms.

    The workflow's own /health target is left out: it stands for an outside service.
    """
    seconds = {name: sum(math_ceil_ms(d) for d in ds) / RUNS
               for name, ds in invocations.durations.items()}
    seconds["StreamFunction (stream open)"] = sum(math_ceil_ms(d) for d in streams) / RUNS
    billed = {name: s for name, s in seconds.items() if not name.endswith("/health")}
    calls = sum(len(ds) for name, ds in invocations.durations.items()
                if not name.endswith("/health")) / RUNS + 1
    return sum(billed.values()) * LAMBDA_MEMORY_GB, calls, seconds


def math_ceil_ms(seconds: float) -> float:
    """A duration rounded up to Lambda's 1 ms billing increment, in seconds."""
    return -(-seconds * 1000 // 1) / 1000


def main() -> int:
    """Count RUNS runs on an in-process stack; print the figures as one JSON line."""
    import boto3

    tally, invocations = Tally(), _Invocations()
    invocations.install()
    RedisCounter(tally).install()
    from stepstream_local.stack import LocalStack

    redis_url = sys.argv[1] if len(sys.argv) > 1 else ""
    with LocalStack(redis_url=redis_url, log_level="WARNING", stream_secret="") as stack:
        assert stack.urls is not None
        _attach(stack, BotoCounter(tally, boto3.client("dynamodb")))
        streams = asyncio.run(_counted_runs(stack.urls.api, tally, invocations))
        per_run = _per_run(tally)
    gb_seconds, calls, seconds = _lambda_use(invocations, streams)
    per_run["lambda_seconds"] = seconds
    per_run["lambda_invocations"] = calls
    per_run["prices"] = {"read_on": PRICES_READ_ON, **PRICES}
    per_run["per_million_steps"] = price_per_million_steps(per_run, gb_seconds, calls)
    print(json.dumps(per_run), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
