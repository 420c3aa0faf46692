"""``sendmessage``: broadcast the message to every member of the channel ``chat``."""

import json
import os
import ssl
import urllib.request
from typing import Any

CHANNEL = "chat"


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_context = event["requestContext"]
    message = json.loads(event["body"])["message"]
    url = f"https://{request_context['domainName']}/{request_context['stage']}/@channels/{CHANNEL}"
    tls = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE"))
    request = urllib.request.Request(url, data=message.encode(), method="POST")
    with urllib.request.urlopen(request, context=tls, timeout=10) as response:
        result = json.load(response)  # {"delivered": n, "disconnectedSlowConsumers": m}
    print(f"delivered to {result['delivered']} connections")
    return {"statusCode": 200}
