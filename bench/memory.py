"""Figure 7: peak RSS of the executor across a burst.

The parent queues a burst of runs on a queue of the bench's own (so the stack's event
source never sees them), then starts ``python -m bench.memory`` as one executor
"container": a fresh interpreter that imports the executor's handler and takes the
burst ten runs a batch, one batch at a time, as one Lambda instance would. The child
reports its RSS after the import and its peak (``ru_maxrss``) after the last batch.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.stats import Summary, summarize

ROOT = Path(__file__).resolve().parents[1]
QUEUE_NAME = "stepstream-bench-memory"


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _queue(env: dict[str, str]) -> tuple[str, str]:
    import boto3

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=QUEUE_NAME, Attributes={"VisibilityTimeout": "900"})
    arn = sqs.get_queue_attributes(QueueUrl=url["QueueUrl"], AttributeNames=["QueueArn"])
    return url["QueueUrl"], arn["Attributes"]["QueueArn"]


def _enqueue(env: dict[str, str], workflow_id: str, queue_url: str, runs: int) -> None:
    from stepstream import Engine, Settings

    settings = Settings(env["WORKFLOWS_TABLE"], env["RUNS_TABLE"], env["EVENTS_TABLE"],
                        queue_url, env.get("REDIS_URL", ""))
    engine = Engine(settings)
    for _ in range(runs):
        run = engine.create_run(workflow_id, {}, None, "queued")
        engine.enqueue_run(run["run_id"])


def measure(env: dict[str, str], workflow_id: str, runs: int) -> list[Summary]:
    """Queue ``runs`` runs, let one fresh executor process take them, report its RSS."""
    queue_url, queue_arn = _queue(env)
    _enqueue(env, workflow_id, queue_url, runs)
    child_env = {**os.environ, **env}
    result = subprocess.run([sys.executable, "-m", "bench.memory", queue_url, queue_arn,
                             str(runs)], cwd=ROOT, env=child_env, check=True,
                            capture_output=True, text=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return [
        summarize("executor RSS after import", "MB", [report["import_mb"]]),
        summarize(f"executor peak RSS, burst of {runs}", "MB", [report["peak_mb"]]),
    ]


def _child(queue_url: str, queue_arn: str, runs: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "functions" / "executor"))
    import executor_handler

    from stepstream_local.poller import SqsPoller
    from stepstream_local.runtime import LocalFunction

    import_mb = _rss_mb()
    function = LocalFunction("ExecutorFunction", executor_handler.handler, 512, 900)
    poller = SqsPoller(function, queue_url, queue_arn, 10, True, concurrency=1)
    done, deadline = 0, time.monotonic() + 120
    while done < runs and time.monotonic() < deadline:
        done += poller.poll_once()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"import_mb": import_mb, "peak_mb": peak_mb, "runs": done}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
