"""Executor functions: run messages in, runs executed; dead letters in, runs failed.

``handler`` takes batches from the run queue. A message is processed once its run is
executed, handed on (queued again to go on later) or left to the executor that holds
it; only an error fails it (``ReportBatchItemFailures``), and SQS delivers it again
until ``maxReceiveCount``, then moves it to the dead-letter queue. ``dead_letter_handler``
takes it from there and fails its run, with the reason, so no run stays ``running``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepstream import Engine, Settings
from stepstream.service import Budget

logger = Logger(service="stepstream-executor")


@cache
def engine() -> Engine:
    """The process's engine, built on first use from the function's environment."""
    return Engine(Settings.from_env())


def _run_id(record: SQSRecord) -> str:
    """The run a message names; a body that names none is a poison message (ValueError)."""
    try:
        run_id = json.loads(record.body)["run_id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(_no_run(record)) from exc
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(_no_run(record))
    return run_id


def _no_run(record: SQSRecord) -> str:
    return f"message {record.message_id} names no run: {record.body[:200]!r}"


def _keepalive(record: SQSRecord) -> Any:
    """Extends the visibility of ``record``'s message while its run's lease is renewed."""
    def extend(seconds: float) -> None:
        engine().sqs.change_message_visibility(
            QueueUrl=engine().settings.run_queue_url,
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=int(seconds),
        )
    return extend


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point for run queue events (``ReportBatchItemFailures``)."""
    budget = Budget(lambda: context.get_remaining_time_in_millis() / 1000)

    def run_record(record: SQSRecord) -> None:
        run_id = _run_id(record)
        logger.append_keys(run_id=run_id)
        finished = engine().execute_run(run_id, budget=budget, keepalive=_keepalive(record))
        status = finished["status"] if finished else "not taken"
        logger.info("run message processed", extra={"status": status})

    # A processor per invocation: it holds the batch's state, and the local stack calls
    # a handler from several threads at once (Lambda never does).
    return process_partial_response(event=event, record_handler=run_record, context=context,
                                    processor=BatchProcessor(event_type=EventType.SQS))


@logger.inject_lambda_context(clear_state=True)
def dead_letter_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point for dead-letter queue events: fail each message's run, with why."""

    def fail(record: SQSRecord) -> None:
        try:
            run_id = _run_id(record)
        except ValueError:
            logger.error("poison message dropped", extra={"body": record.body[:200]})
            return
        error = ("the executor failed this run's message as many times as the queue "
                 "allows; it went to the dead-letter queue (see the executor's logs for why)")
        failed = engine().fail_run(run_id, error)
        logger.warning("dead letter", extra={"run_id": run_id, "run_failed": failed})

    return process_partial_response(event=event, record_handler=fail, context=context,
                                    processor=BatchProcessor(event_type=EventType.SQS))
