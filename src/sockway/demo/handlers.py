"""Demo handlers: plain Lambda-style functions, as a user would write them.

- ``$connect`` joins the new connection to the ``demo`` channel (sockway channel extension);
- ``echo`` is a two-way route: the reply is the message's ``data``;
- ``broadcast`` sends ``data`` to every connection in the ``demo`` channel;
- ``$default`` answers unknown actions with a hint.

They call the gateway's management API over ``https://{domainName}/{stage}``, trusting the
development CA through ``AWS_CA_BUNDLE`` exactly as boto3 would.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.parse
import urllib.request
from typing import Any

CHANNEL = "demo"


def _call(event: dict[str, Any], method: str, path: str, body: bytes = b"") -> None:
    ctx = event["requestContext"]
    url = f"https://{ctx['domainName']}/{ctx['stage']}{path}"
    tls = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE"))
    request = urllib.request.Request(url, data=body or None, method=method)
    with urllib.request.urlopen(request, timeout=10, context=tls) as response:
        response.read()


def _data(event: dict[str, Any]) -> str:
    try:
        message = json.loads(event.get("body") or "{}")
    except ValueError:
        return event.get("body") or ""
    data = message.get("data", "") if isinstance(message, dict) else ""
    return data if isinstance(data, str) else json.dumps(data)


def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    connection_id = urllib.parse.quote(event["requestContext"]["connectionId"], safe="")
    _call(event, "PUT", f"/@connections/{connection_id}/channels/{CHANNEL}")
    return {"statusCode": 200}


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": _data(event)}


def broadcast(event: dict[str, Any], context: Any) -> dict[str, Any]:
    sender = event["requestContext"]["connectionId"]
    payload = json.dumps({"from": sender, "data": _data(event)}).encode()
    _call(event, "POST", f"/@channels/{CHANNEL}", payload)
    return {"statusCode": 200}


def default(event: dict[str, Any], context: Any) -> dict[str, Any]:
    hint = 'Unknown action. Try {"action":"echo","data":"hi"} or {"action":"broadcast","data":"hi"}'
    return {"statusCode": 200, "body": hint}
