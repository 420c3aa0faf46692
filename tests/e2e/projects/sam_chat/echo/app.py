import json
import os

import boto3


def handler(event, context):
    """Answer through the execute-api URL built from the event, as AWS's samples do."""
    ctx = event["requestContext"]
    url = f"https://{ctx['apiId']}.execute-api.{os.environ['AWS_REGION']}.amazonaws.com/{ctx['stage']}"
    api = boto3.client("apigatewaymanagementapi", endpoint_url=url)
    api.post_to_connection(
        ConnectionId=ctx["connectionId"],
        Data=json.dumps({"apiId": ctx["apiId"], "via": url}).encode(),
    )
    return {"statusCode": 200}
