"""Settings read from the environment once per process (Lambda container or local stack)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Where the engine's resources live.

    Attributes:
        workflows_table: DynamoDB table of workflow definitions.
        runs_table: DynamoDB table of runs and their step results.
        events_table: DynamoDB table of each run's ordered events.
        run_queue_url: SQS queue that carries queued runs to the executor.
        redis_url: Optional Redis for the live event path; empty means DynamoDB only.
        stream_url: Base URL of the stream function (its function URL).
        stream_token_secret: Key that signs stream tokens; empty leaves streams open.
        lease_seconds: How long an executor's hold on a run lasts unless renewed; an
            executor that dies leaves its run to be taken up this long after.
    """

    workflows_table: str
    runs_table: str
    events_table: str
    run_queue_url: str
    redis_url: str
    stream_url: str = ""
    stream_token_secret: str = ""
    lease_seconds: float = 120.0

    @classmethod
    def from_env(cls) -> Settings:
        """Read settings from the environment the template (or local stack) sets."""
        env = os.environ
        return cls(
            workflows_table=env.get("WORKFLOWS_TABLE", ""),
            runs_table=env.get("RUNS_TABLE", ""),
            events_table=env.get("EVENTS_TABLE", ""),
            run_queue_url=env.get("RUN_QUEUE_URL", ""),
            redis_url=env.get("REDIS_URL", ""),
            stream_url=env.get("STREAM_URL", ""),
            stream_token_secret=env.get("STREAM_TOKEN_SECRET", ""),
            lease_seconds=float(env.get("RUN_LEASE_SECONDS") or 120),
        )
