import os


def handler(event, context):
    token = (event.get("queryStringParameters") or {}).get("token", "")
    allowed = os.environ["ALLOWED_TOKENS"].split(",")
    effect = "Allow" if token in allowed else "Deny"
    return {
        "principalId": token or "anonymous",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}
            ],
        },
        "context": {"user": token.split("-")[0]},
    }
