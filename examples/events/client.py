"""A Python client of the example: subscribe to a room, publish over WebSocket and HTTP.

    python examples/events/client.py https://localhost:8080/event da2-sockwaylocaldevelopmentkey

Trusts the gateway's development CA, which ``sockway serve --config examples/events/sockway.yaml``
writes next to that file (``examples/events/.sockway/tls/ca.pem``; ``--ca`` for another). Prints every event
received and the publish results, including the message the handler refused.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import websockets


def _auth_protocol(headers: dict[str, str]) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(headers).encode()).decode().rstrip("=")
    return f"header-{encoded}"


async def run(
    endpoint: str, api_key: str, tls: ssl.SSLContext, room: str = "/chat/lobby"
) -> dict[str, Any]:
    """Subscribe to ``room``, publish two messages (one refused) over WebSocket and one over
    HTTP; return what was received and the publish results."""
    host = urlsplit(endpoint).netloc
    realtime = f"wss://{host}{urlsplit(endpoint).path}/realtime"
    auth = {"x-api-key": api_key}
    async with websockets.connect(
        realtime,
        subprotocols=["aws-appsync-event-ws", _auth_protocol({"host": host, **auth})],  # type: ignore[list-item]
        ssl=tls,
    ) as ws:

        async def next_frame() -> dict[str, Any]:
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] != "ka":
                    return frame  # type: ignore[no-any-return]

        await ws.send(json.dumps({"type": "connection_init"}))
        assert (await next_frame())["type"] == "connection_ack"
        await ws.send(
            json.dumps({"type": "subscribe", "id": "room", "channel": room, "authorization": auth})
        )
        assert (await next_frame())["type"] == "subscribe_success"
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "secret",
                    "channel": "/chat/private/x",
                    "authorization": auth,
                }
            )
        )
        refused = await next_frame()
        events = [json.dumps({"text": "what the heck"}), json.dumps({"text": "  "})]
        await ws.send(
            json.dumps(
                {
                    "type": "publish",
                    "id": str(uuid.uuid4()),
                    "channel": room,
                    "events": events,
                    "authorization": auth,
                }
            )
        )
        received, ws_result = [], None
        while ws_result is None:
            frame = await next_frame()
            if frame["type"] == "data":
                received.append(json.loads(frame["event"]))
            else:
                ws_result = frame
        async with aiohttp.ClientSession() as http:
            body = {"channel": room, "events": [json.dumps({"text": "hello over HTTP"})]}
            async with http.post(endpoint, json=body, headers=auth, ssl=tls) as resp:
                http_result = await resp.json()
        received.append(json.loads((await next_frame())["event"]))
    return {"received": received, "publish": ws_result, "http": http_result, "refused": refused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("api_key")
    # The gateway keeps its state (the development CA) in state_dir, relative to the config
    # file: this directory, wherever the command is run from.
    parser.add_argument(
        "--ca", default=str(Path(__file__).resolve().parent / ".sockway/tls/ca.pem")
    )
    args = parser.parse_args()
    tls = ssl.create_default_context(cafile=args.ca)
    print(json.dumps(asyncio.run(run(args.endpoint, args.api_key, tls)), indent=2))


if __name__ == "__main__":
    main()
