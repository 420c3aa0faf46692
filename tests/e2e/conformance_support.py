"""The three front doors behind one raw RFC 6455 client, on either transport.

``open_door(port, door, via)`` opens a connection to one front door with ``RawClient`` and
takes it past the door's own greeting (Pusher's ``connection_established``, AppSync's
``connection_init`` / ``connection_ack``), so that what follows is plain framing.
``via="picows"`` upgrades on a fresh connection (the sniffer hands it to picows);
``via="aiohttp"`` first sends a plain request on the same keep-alive connection, so the
upgrade is served by aiohttp. ``round_trip(client, door)`` sends one message the door answers
(an echo route, ``pusher:ping``, an AppSync ``connection_init``) and returns the answer's
text, skipping AppSync keep-alives.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tests.conftest import write_handlers
from tests.e2e.appsync_support import API_KEY, SUBPROTOCOL, events_api
from tests.e2e.pusher_support import KEY, pusher_app
from tests.e2e.rawws import RawClient

DOORS = ("websocket", "pusher", "events")
TRANSPORTS = ("picows", "aiohttp")

ECHO = """
def echo(event, context):
    return {"statusCode": 200, "body": event.get("body") or ""}


def ok(event, context):
    return {"statusCode": 200}
"""


def conformance_apis(tmp_path: Path, **websocket_limits: Any) -> list[dict[str, Any]]:
    """One API of each type; the websocket API echoes every message on ``$default``."""
    code = write_handlers(tmp_path / "echo", {"echo_conf.py": ECHO})
    websocket = {
        "name": "ws",
        "type": "websocket",
        "stage": "dev",
        "code_dir": str(code),
        "routes": {
            "$connect": "echo_conf.ok",
            "$disconnect": "echo_conf.ok",
            "$default": {"handler": "echo_conf.echo", "route_response": True},
        },
    }
    if websocket_limits:
        websocket["limits"] = websocket_limits
    return [websocket, pusher_app(enable_client_messages=True), events_api()]


def _events_headers(port: int) -> str:
    auth = {"host": f"127.0.0.1:{port}", "x-api-key": API_KEY}
    raw = base64.urlsafe_b64encode(json.dumps(auth).encode()).decode().rstrip("=")
    return f"Sec-WebSocket-Protocol: {SUBPROTOCOL}, header-{raw}\r\n"


def door_path(door: str) -> tuple[str, str]:
    """(path, extra headers) of the door's upgrade request (port-free part)."""
    if door == "websocket":
        return "/dev", ""
    if door == "pusher":
        return f"/app/{KEY}?protocol=7", ""
    return "/event/realtime", ""


async def open_door(port: int, door: str, via: str, version: str = "13") -> RawClient:
    path, extra = door_path(door)
    if door == "events":
        extra = _events_headers(port)
    after = "/health" if via == "aiohttp" else None
    client = await RawClient.connect(port, path, after=after, extra_headers=extra, version=version)
    if door == "pusher":
        opcode, payload = await client.read_frame()
        assert opcode == 1 and b"connection_established" in payload, payload
    elif door == "events":
        client.send_frame(1, b'{"type":"connection_init"}')
        assert b"connection_ack" in await next_data(client)
    return client


async def next_data(client: RawClient) -> bytes:
    """The next text or binary frame's payload, skipping AppSync ``ka`` frames."""
    while True:
        opcode, payload = await client.read_frame()
        if opcode in (1, 2) and payload != b'{"type":"ka"}':
            return payload
        if opcode == 8:
            raise AssertionError(f"closed: {payload!r}")


def probe_message(door: str, text: str = "probe") -> bytes:
    if door == "websocket":
        return text.encode()
    if door == "pusher":
        return b'{"event":"pusher:ping","data":{}}'
    return b'{"type":"connection_init"}'


def is_probe_answer(door: str, payload: bytes, text: str = "probe") -> bool:
    if door == "websocket":
        return payload == text.encode()
    if door == "pusher":
        return b"pusher:pong" in payload
    return b"connection_ack" in payload


async def round_trip(client: RawClient, door: str, text: str = "probe") -> bool:
    client.send_frame(1, probe_message(door, text))
    return is_probe_answer(door, await next_data(client), text)
