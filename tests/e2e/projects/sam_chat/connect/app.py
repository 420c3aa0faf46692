import os

import boto3

table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


def handler(event, context):
    context_ = event["requestContext"]
    table.put_item(
        Item={
            "connectionId": context_["connectionId"],
            "user": context_.get("authorizer", {}).get("user", "?"),
        }
    )
    return {"statusCode": 200, "body": "Connected."}
