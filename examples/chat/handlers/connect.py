"""``$connect``: remember the new connection in the table."""

import os
from typing import Any

import boto3

# The endpoint comes from AWS_ENDPOINT_URL_DYNAMODB when it is set (boto3 reads it itself).
table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    table.put_item(Item={"connectionId": event["requestContext"]["connectionId"]})
    return {"statusCode": 200}
