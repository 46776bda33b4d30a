"""``python -m bench --profile DIR``: where the time of a run goes, as pyinstrument sees it.

Starts a stack whose functions are profiled invocation by invocation (see
``bench.stackproc``), runs queued and sync runs of service_health_pipeline, and
writes one text profile per function (``ApiFunction.txt``, ``ExecutorFunction.txt``)
plus ``runner.txt``: the runner in-process on the 100-step workflow of figure 4.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench import e2e, overhead
from bench.client import StackClient, health_pipeline
from bench.run import redis_url
from bench.stackproc import StackProcess
from stepstream.definition import parse_workflow

RUNS = 30


async def _runs(api: str) -> None:
    client = StackClient(api)
    try:
        workflow_id = await client.register(health_pipeline(api))
        await e2e.measure(client, workflow_id, RUNS)
    finally:
        await client.aclose()


def _runner(directory: Path) -> None:
    from pyinstrument import Profiler

    workflow = parse_workflow(overhead.hundred_steps())
    profiler = Profiler(interval=0.0001)
    with profiler:
        overhead.per_step_us(workflow, 50)
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    (directory / "runner.txt").write_text(text)


def record(directory: Path) -> None:
    """Write the profiles into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    with redis_url() as redis, StackProcess(redis, profile_dir=directory.resolve()) as stack:
        asyncio.run(_runs(stack.api))
    _runner(directory)
    print(f"profiles written to {directory}: " + ", ".join(
        sorted(path.name for path in directory.glob("*.txt"))))
