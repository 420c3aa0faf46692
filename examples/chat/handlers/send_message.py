"""``sendmessage``: post the message to every connection in the table.

Connections that are gone (closed without ``$disconnect`` reaching the table) are deleted.
"""

import json
import os
from typing import Any

import boto3

table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_context = event["requestContext"]
    message = json.loads(event["body"])["message"]

    domain = request_context["domainName"]
    stage = request_context["stage"]
    apigw = boto3.client("apigatewaymanagementapi", endpoint_url=f"https://{domain}/{stage}")

    scan: dict[str, Any] = {"ProjectionExpression": "connectionId"}
    while True:
        page = table.scan(**scan)
        for item in page["Items"]:
            connection_id = item["connectionId"]
            try:
                apigw.post_to_connection(ConnectionId=connection_id, Data=message)
            except apigw.exceptions.GoneException:
                print(f"Found stale connection, deleting {connection_id}")
                table.delete_item(Key={"connectionId": connection_id})
        if "LastEvaluatedKey" not in page:
            break
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    return {"statusCode": 200}
