"""The SQS event source: long-poll a queue and invoke a function with SQS batch events.

As Lambda's event source mapping does: a batch is deleted when the function
succeeds, except the records it names in ``batchItemFailures`` (with
``ReportBatchItemFailures``); a function that raises leaves the whole batch to
reappear after the visibility timeout, and the queue's redrive policy moves a
message that keeps failing to the dead-letter queue.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

import boto3

from stepstream_local.runtime import LocalFunction

logger = logging.getLogger(__name__)

WAIT_SECONDS = 1


def _record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


class SqsPoller:
    """Feeds one queue to one function from a few polling threads.

    Args:
        function: The function the event source invokes.
        queue_url: The queue.
        queue_arn: The queue's ARN (records carry it).
        batch_size: ``BatchSize`` from the template.
        report_failures: Whether ``ReportBatchItemFailures`` is on.
        concurrency: How many batches may run at once.
    """

    def __init__(
        self,
        function: LocalFunction,
        queue_url: str,
        queue_arn: str,
        batch_size: int,
        report_failures: bool,
        concurrency: int = 4,
    ) -> None:
        self.function = function
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.batch_size = min(batch_size, 10)
        self.report_failures = report_failures
        self.sqs = boto3.client("sqs")
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, name=f"sqs-poller-{n}", daemon=True)
            for n in range(concurrency)
        ]

    def start(self) -> None:
        """Start polling."""
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Stop polling; batches in flight finish first."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=WAIT_SECONDS + 30)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the event source keeps polling whatever happens
                logger.exception("sqs poll failed")
                self.stopping.wait(0.5)

    def poll_once(self) -> int:
        """Receive one batch and invoke the function with it; returns the batch size."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=WAIT_SECONDS,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [_record(m, self.queue_arn) for m in messages]}
        failed = self._invoke(event, {m["MessageId"] for m in messages})
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                         for n, m in enumerate(done)],
            )
        return len(messages)

    def _invoke(self, event: dict[str, Any], message_ids: set[str]) -> set[str]:
        """Invoke the function; the ids of the messages that must not be deleted."""
        try:
            result = self.function.invoke(event)
        except Exception:  # noqa: BLE001 - a crashed invocation fails its whole batch
            logger.exception("function failed its batch", extra={"size": len(message_ids)})
            return message_ids
        if not self.report_failures:
            return set()
        failures = (result or {}).get("batchItemFailures", [])
        return {item["itemIdentifier"] for item in failures}
