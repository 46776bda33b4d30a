"""Executor function: SQS batches of queued runs in, runs executed, failures per record."""

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

logger = Logger(service="stepstream-executor")
processor = BatchProcessor(event_type=EventType.SQS)


@cache
def engine() -> Engine:
    """The process's engine, built on first use from the function's environment."""
    return Engine(Settings.from_env())


def run_record(record: SQSRecord) -> None:
    """Execute the run one message names; an exception redelivers only this message."""
    run_id = json.loads(record.body)["run_id"]
    logger.append_keys(run_id=run_id)
    finished = engine().execute_run(run_id)
    status = finished["status"] if finished else "already taken"
    logger.info("run processed", extra={"status": status})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point for SQS events (``ReportBatchItemFailures``)."""
    return process_partial_response(
        event=event, record_handler=run_record, processor=processor, context=context
    )
