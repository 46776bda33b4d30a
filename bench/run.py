"""``python -m bench`` (``make bench``): every figure of issue #6, printed as tables.

Each figure prints median, p90, min, max and sample count; ``--json PATH`` also
writes them all, with the machine they came from. ``--quick`` takes fewer samples
(a smoke run); ``--profile DIR`` instead records pyinstrument profiles of the
functions serving queued and sync runs, and of the runner, into DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import burst, coldstart, e2e, lag, memory, overhead
from bench.client import StackClient, health_pipeline
from bench.stackproc import StackProcess
from bench.stats import Summary, table
from bench.targets import render, verdicts

ROOT = Path(__file__).resolve().parents[1]
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def machine() -> dict[str, Any]:
    """What the figures were taken on."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
              if line.startswith("model name")]
    return {"nproc": os.cpu_count(), "cpu": models[0] if models else platform.processor(),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average": os.getloadavg(), "taken_at": time.strftime("%Y-%m-%d %H:%M %Z")}


@contextmanager
def redis_url() -> Iterator[str]:
    """$REDIS_URL, else the Redis on 127.0.0.1:6379, else an embedded fakeredis."""
    from tests.redis_url import local_redis_answers

    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
    elif local_redis_answers():
        yield LOCAL_REDIS
    else:
        from fakeredis import TcpFakeServer

        print("(no Redis answers on 127.0.0.1:6379: an embedded fakeredis stands in)")
        server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        host, port = server.server_address[:2]
        try:
            yield f"redis://{host}:{port}/0"
        finally:
            server.shutdown()
            server.server_close()


def _use_stack_aws(stack: StackProcess) -> dict[str, str]:
    """Point this process's AWS clients at the stack's moto server; the stack's env."""
    env = dict(stack.info["env"])
    os.environ.update(AWS_ENDPOINT_URL=env["AWS_ENDPOINT_URL"], AWS_ACCESS_KEY_ID="local",
                      AWS_SECRET_ACCESS_KEY="local", AWS_DEFAULT_REGION="us-east-1")
    return env


class Suite:
    """The figures, gathered section by section.

    Args:
        quick: Fewer samples everywhere (a smoke run, not figures to quote).
    """

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.sections: dict[str, list[Summary]] = {}
        self.extra: dict[str, Any] = {}

    def add(self, title: str, rows: list[Summary]) -> None:
        """Keep a section and print it."""
        self.sections[title] = rows
        print("\n" + table(title, rows), flush=True)

    def n(self, full: int, quick: int) -> int:
        """The sample count for this run."""
        return quick if self.quick else full

    async def with_redis(self, stack: StackProcess) -> None:
        """Figures 1, 2, 3 (Redis) and 7 on a stack with Redis."""
        env = _use_stack_aws(stack)
        client = StackClient(stack.api, connections=2 * 200 + 8)
        try:
            workflow_id = await client.register(health_pipeline(stack.api))
            self.add("1. one run at a time (service_health_pipeline)",
                     await e2e.measure(client, workflow_id, self.n(30, 5)))
            rows = await burst.measure(client, workflow_id, 20, self.n(3, 1))
            # One burst of 200: on this stack it takes over a minute (see the README).
            rows += await burst.measure(client, workflow_id, self.n(200, 40), 1)
            self.add("2. bursts fired at once", rows)
            self.sections["3. stream delivery lag"] = [
                await lag.measure(client, env, "Redis", self.n(40, 10))]
        finally:
            await client.aclose()
        self.add("7. executor memory", await asyncio.to_thread(
            memory.measure, env, workflow_id, self.n(200, 20)))

    async def without_redis(self, stack: StackProcess) -> None:
        """Figure 3 without Redis: the stream follows the table by polling."""
        env = _use_stack_aws(stack)
        client = StackClient(stack.api)
        try:
            row = await lag.measure(client, env, "DynamoDB only", self.n(40, 10))
        finally:
            await client.aclose()
        self.add("3. stream delivery lag", self.sections["3. stream delivery lag"] + [row])

    def in_process(self) -> None:
        """Figures 4 and 5."""
        self.add("4. engine overhead (runner in-process, no I/O)",
                 overhead.measure(self.n(400, 50), self.n(40, 5)))
        self.add("5. cold start (fresh interpreter, handler import)",
                 coldstart.measure(self.n(5, 2)))
        self.extra["cold_start_heaviest_imports_ms"] = {
            name: coldstart.heaviest(name) for name in coldstart.HANDLERS}

    def storage(self, redis: str) -> None:
        """Figure 6, counted in a process of its own."""
        result = subprocess.run([sys.executable, "-m", "bench.cost", redis], cwd=ROOT,
                                check=True, capture_output=True, text=True)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        self.extra["storage_and_cost"] = report
        print("\n" + render_cost(report), flush=True)


def render_cost(report: dict[str, Any]) -> str:
    """Figure 6 as text: requests per run, units, and dollars per million steps."""
    lines = ["6. storage and cost of one service_health_pipeline run (queued, streamed)",
             "requests per run (component, service, operation):"]
    lines += [f"  {name:<48} {count:g}" for name, count in report["requests"].items()]
    units = report["units"]
    lines.append(f"DynamoDB: {report['dynamodb_requests']:g} requests, "
                 f"{report['dynamodb_writes']:g} writes ({report['dynamodb_writes'] / 6:.2f}"
                 f" per step), {units.get('wru', 0):g} WRU, {units.get('rru', 0):g} RRU; "
                 f"SQS: {report['sqs_requests']:g}; Redis: {report['redis_round_trips']:g} "
                 f"round trips, {units.get('commands', 0):g} commands")
    lines.append("Lambda seconds per run: " + ", ".join(
        f"{k} {v * 1000:.0f} ms" for k, v in report["lambda_seconds"].items()))
    lines.append(f"$ per million steps (prices of {report['prices']['read_on']}, us-east-1):")
    lines += [f"  {k:<28} {v:8.3f}" for k, v in report["per_million_steps"].items()]
    return "\n".join(lines)


def headline(suite: Suite) -> dict[str, float]:
    """The figures the targets are about, by key."""
    rows = {row.name.strip(): row for rows in suite.sections.values() for row in rows}

    def median(name: str) -> float:
        return rows[name].median if name in rows else float("nan")

    cost = suite.extra.get("storage_and_cost", {})
    return {
        "e2e": median("e2e execute-async -> run_completed"),
        "sync": median("sync execute round trip"),
        "burst20": median("burst of 20: throughput"),
        "lag_redis": median("stream delivery lag (Redis)"),
        "overhead6": median("engine overhead, 6 steps"),
        "overhead100": median("engine overhead, 100 steps"),
        "cold_api": median("cold start api: import"),
        "cold_stream": median("cold start stream: import"),
        "cold_executor": median("cold start executor: import"),
        "writes_per_step": cost.get("dynamodb_writes", float("nan")) / 6,
        "cost": cost.get("per_million_steps", {}).get("total", float("nan")),
        "executor": median("executor time (server)"),
        "queue": median("queue wait (server)"),
    }


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure, in an order that keeps each from disturbing the next."""
    suite = Suite(args.quick)
    info = machine()
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}; "
          f"load average {info['load_average'][0]:.2f}", flush=True)
    with redis_url() as redis:
        with StackProcess(redis) as stack:
            asyncio.run(suite.with_redis(stack))
        with StackProcess("") as stack:
            asyncio.run(suite.without_redis(stack))
        suite.storage(redis)
    suite.in_process()
    rows = verdicts(headline(suite))
    print("\n" + render(rows), flush=True)
    return {"machine": info, "quick": args.quick, "targets": rows,
            "figures": {title: [row.as_dict() for row in section]
                        for title, section in suite.sections.items()}, **suite.extra}


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the suite (or the profiles)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write pyinstrument profiles to DIR instead of taking figures")
    args = parser.parse_args(argv)
    if args.profile:
        from bench.profiles import record

        record(args.profile)
        return 0
    started = time.perf_counter()
    report = run_suite(args)
    report["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str, ensure_ascii=False))
        print(f"\nfigures written to {args.json}")
    print(f"bench took {report['seconds']:.0f} s")
    return 0
