import json
import os

import boto3
from botocore.exceptions import ClientError

table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
# Where to post: the stage's callback URL from the template (an !Sub of the API's own host).
management = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["CALLBACK_URL"])


def handler(event, context):
    message = json.loads(event["body"])["data"]
    sender = event["requestContext"]["connectionId"]
    text = json.dumps(
        {
            "from": sender,
            "data": message,
            "greeting": os.environ["GREETING"],
            "mode": os.environ["MODE"],
        }
    )
    for item in table.scan(ProjectionExpression="connectionId")["Items"]:
        try:
            management.post_to_connection(ConnectionId=item["connectionId"], Data=text)
        except ClientError as error:
            if error.response["Error"]["Code"] == "GoneException":
                table.delete_item(Key={"connectionId": item["connectionId"]})
            else:
                raise
    return {"statusCode": 200, "body": "Data sent."}
