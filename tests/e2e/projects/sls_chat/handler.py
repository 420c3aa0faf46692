import os

import boto3

table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


def connect(event, context):
    table.put_item(Item={"connectionId": event["requestContext"]["connectionId"]})
    return {"statusCode": 200}


def disconnect(event, context):
    table.delete_item(Key={"connectionId": event["requestContext"]["connectionId"]})
    return {"statusCode": 200}


def broadcast(event, context):
    """Anything without a known type goes to every other connection."""
    ctx = event["requestContext"]
    api = boto3.client(
        "apigatewaymanagementapi", endpoint_url=f"https://{ctx['domainName']}/{ctx['stage']}"
    )
    for item in table.scan()["Items"]:
        if item["connectionId"] != ctx["connectionId"]:
            api.post_to_connection(ConnectionId=item["connectionId"], Data=event["body"])
    return {"statusCode": 200}


def auth(event, context):
    token = event["queryStringParameters"].get("token")
    return {
        "principalId": "user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if token == "letmein" else "Deny",
                    "Resource": event["methodArn"],
                }
            ],
        },
    }
