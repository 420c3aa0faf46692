"""The chat's handlers as one HTTP service, for sockway's HTTP endpoint runtime.

sockway POSTs each event (the same JSON a Lambda function receives) to ``/{route}`` and reads
the answer as the function's result. Every call is checked with ``X-Sockway-Signature``.

- ``/authorize``: the REQUEST authorizer; lets in a ``?name=`` of 1-20 letters and hands the name
  to the other routes in ``requestContext.authorizer.user``; anyone else gets 401.
- ``/connect``: joins the new connection to channel ``chat`` through sockway's management API.
- ``/sendmessage``: sends ``"<name>: <message>"`` to every member of ``chat`` in one call.

Run: ``SOCKWAY_HTTP_SECRET=... python service.py`` (listens on 127.0.0.1:9000, or ``PORT``).
Needs only aiohttp.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from typing import Any

from aiohttp import ClientSession, web

CHANNEL = "chat"
NAME = re.compile(r"^[A-Za-z]{1,20}$")


def verify_sockway_signature(
    secret: bytes, header: str, body: bytes, tolerance_s: int = 300
) -> bool:
    """True when `header` (X-Sockway-Signature) signs `body` with `secret` and is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, received = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received)


class ChatService:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.session: ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{route}", self.handle)
        app.on_cleanup.append(self.close)
        return app

    async def close(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_sockway_signature(
            self.secret, request.headers.get("X-Sockway-Signature", ""), body
        ):
            return web.json_response({"errorMessage": "invalid signature"}, status=401)
        event = json.loads(body)
        route = request.match_info["route"]
        if route == "authorize":
            return self.authorize(event)
        if route == "connect":
            await self.management(
                event, "PUT", f"@connections/{self.connection(event)}/channels/{CHANNEL}"
            )
            return web.json_response({"statusCode": 200})
        if route == "sendmessage":
            user = event["requestContext"]["authorizer"]["user"]
            message = json.loads(event["body"]).get("message", "")
            await self.management(event, "POST", f"@channels/{CHANNEL}", f"{user}: {message}")
            return web.json_response({"statusCode": 200})
        return web.json_response({"errorMessage": f"no route {route}"}, status=404)

    def authorize(self, event: dict[str, Any]) -> web.Response:
        name = (event.get("queryStringParameters") or {}).get("name", "")
        if not NAME.match(name):
            # Lambda's convention: the error message "Unauthorized" makes sockway answer 401.
            return web.json_response({"errorMessage": "Unauthorized"}, status=401)
        return web.json_response(
            {
                "principalId": name,
                "policyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Action": "execute-api:Invoke",
                            "Effect": "Allow",
                            "Resource": event["methodArn"],
                        }
                    ],
                },
                "context": {"user": name},
            }
        )

    @staticmethod
    def connection(event: dict[str, Any]) -> str:
        return str(event["requestContext"]["connectionId"])

    async def management(
        self, event: dict[str, Any], method: str, path: str, data: str | None = None
    ) -> None:
        """Call sockway's management API at the address the event names."""
        context = event["requestContext"]
        url = f"http://{context['domainName']}/{context['stage']}/{path}"
        if self.session is None:
            self.session = ClientSession()
        async with self.session.request(method, url, data=data) as response:
            response.raise_for_status()


if __name__ == "__main__":
    service = ChatService(os.environ["SOCKWAY_HTTP_SECRET"].encode())
    web.run_app(service.app(), host="127.0.0.1", port=int(os.environ.get("PORT", "9000")))
