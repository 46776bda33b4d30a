"""The executor function's batch contract, called as Lambda's SQS event source calls it."""

from __future__ import annotations

import json

import httpx

from stepstream import Engine, Settings
from stepstream_local.stack import LocalStack
from tests.conftest import ROOT
from tests.integration.conftest import health_pipeline

EVENT = ROOT / "tests" / "events" / "sqs_run_batch.json"


def test_batch_reports_only_the_bad_record_and_runs_the_good_one(
    api: httpx.Client, stack: LocalStack
) -> None:
    """Given a good and a malformed record, only the malformed one is a batch item failure."""
    workflow_id = health_pipeline(api, "batch")
    run = Engine(Settings.from_env()).create_run(workflow_id, {}, None, "queued")
    event = json.loads(EVENT.read_text().replace("RUN_ID", run["run_id"]))
    executor = stack.queue_function("ExecutorFunction")

    result = executor.invoke(event)

    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert api.get(f"/api/v1/runs/{run['run_id']}").json()["status"] == "completed"


def test_redelivered_message_does_not_run_a_finished_run_again(
    api: httpx.Client, stack: LocalStack
) -> None:
    """A second delivery of a finished run's message succeeds without writing new events."""
    workflow_id = health_pipeline(api, "redeliver")
    engine = Engine(Settings.from_env())
    run = engine.create_run(workflow_id, {}, None, "queued")
    event = json.loads(EVENT.read_text().replace("RUN_ID", run["run_id"]))
    event["Records"] = event["Records"][:1]
    executor = stack.queue_function("ExecutorFunction")

    first = executor.invoke(event)
    events_after_first = engine.store.events_after(run["run_id"], 0)
    second = executor.invoke(event)

    assert first == second == {"batchItemFailures": []}
    assert engine.store.events_after(run["run_id"], 0) == events_after_first
