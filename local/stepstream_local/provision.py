"""Create the template's DynamoDB tables and SQS queues in the AWS emulator."""

from __future__ import annotations

import json
from typing import Any

import boto3

from stepstream_local.cfn import Template

_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
)


def _create_queue(template: Template, sqs: Any, logical_id: str, props: dict[str, Any]) -> None:
    attributes: dict[str, str] = {}
    for key, value in template.resolve(props).items():
        if key in ("QueueName", "Tags"):
            continue
        attributes[key] = json.dumps(value) if isinstance(value, dict) else str(value)
    name = props.get("QueueName", logical_id)
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    template.physical[logical_id] = url
    template.attributes[(logical_id, "Arn")] = arn["QueueArn"]
    template.attributes[(logical_id, "QueueName")] = name
    template.attributes[(logical_id, "QueueUrl")] = url


def _queue_order(queues: dict[str, dict[str, Any]]) -> list[str]:
    """Dead-letter queues first: a redrive policy names its target's ARN."""
    def depends(spec: dict[str, Any]) -> bool:
        return "RedrivePolicy" in spec.get("Properties", {})

    return sorted(queues, key=lambda name: depends(queues[name]))


def provision(template: Template) -> None:
    """Create every table and queue the template declares, recording their names."""
    dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    queues = template.resources("AWS::SQS::Queue")
    for logical_id in _queue_order(queues):
        _create_queue(template, sqs, logical_id, queues[logical_id].get("Properties", {}))
    for logical_id, spec in template.resources("AWS::DynamoDB::Table").items():
        props = template.resolve(spec["Properties"])
        name = props.get("TableName", logical_id)
        request = {k: props[k] for k in _TABLE_KEYS if k in props}
        dynamodb.create_table(TableName=name, **request)
        template.physical[logical_id] = name
        template.attributes[(logical_id, "Arn")] = (
            f"arn:aws:dynamodb:us-east-1:123456789012:table/{name}"
        )
