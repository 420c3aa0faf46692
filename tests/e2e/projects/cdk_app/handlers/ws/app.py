import json
import os
import time

import boto3

table = boto3.resource("dynamodb").Table(os.environ.get("TABLE_NAME", "unset"))


def connect(event, context):
    table.put_item(
        Item={
            "connectionId": event["requestContext"]["connectionId"],
            "expiresAt": int(time.time()) + 3600,
        }
    )
    return {"statusCode": 200}


def disconnect(event, context):
    table.delete_item(Key={"connectionId": event["requestContext"]["connectionId"]})
    return {"statusCode": 200}


def authorize(event, context):
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    effect = "Allow" if headers.get("x-secret") == os.environ["SECRET"] else "Deny"
    return {
        "principalId": "me",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}
            ],
        },
    }


def notify(event, context):
    """Ask the audit function (Lambda Invoke), then tell every connection."""
    body = json.loads(event["body"])
    answer = boto3.client("lambda").invoke(
        FunctionName=os.environ["AUDIT_FUNCTION"],
        InvocationType="RequestResponse",
        Payload=json.dumps({"text": body.get("text", "")}).encode(),
    )
    audited = json.loads(answer["Payload"].read())
    management = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["CALLBACK_URL"])
    for item in table.scan()["Items"]:
        management.post_to_connection(
            ConnectionId=item["connectionId"], Data=json.dumps({"notice": audited["text"]})
        )
    return {"statusCode": 200, "body": json.dumps({"sent": audited["text"]})}
