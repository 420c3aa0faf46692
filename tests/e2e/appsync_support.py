"""Helpers for the AppSync Events end-to-end tests: config, auth subprotocol, a small client."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import websockets

API_KEY = "da2-abcdefghijklmnopqrstuvwxyz"
SUBPROTOCOL = "aws-appsync-event-ws"


def events_api(code_dir: Path | None = None, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "ev",
        "type": "events",
        "auth_providers": [{"type": "API_KEY", "keys": [API_KEY]}],
        "namespaces": {"default": None, "other": None},
    }
    if code_dir is not None:
        config["code_dir"] = str(code_dir)
    config.update(overrides)
    return config


def header_subprotocol(headers: dict[str, str]) -> str:
    raw = base64.urlsafe_b64encode(json.dumps(headers).encode()).decode().rstrip("=")
    return "header-" + raw


class EventsClient:
    """A raw realtime client over ``websockets``: sends frames, reads non-``ka`` frames."""

    def __init__(self, ws: websockets.ClientConnection, host: str) -> None:
        self.ws = ws
        self.host = host
        self.kas = 0

    @classmethod
    async def connect(
        cls, port: int, auth: dict[str, str] | None = None, *, init: bool = True
    ) -> EventsClient:
        host = f"127.0.0.1:{port}"
        headers = auth if auth is not None else {"host": host, "x-api-key": API_KEY}
        ws = await websockets.connect(
            f"ws://{host}/event/realtime",
            subprotocols=[SUBPROTOCOL, header_subprotocol(headers)],  # type: ignore[list-item]
        )
        client = cls(ws, host)
        if init:
            await client.send({"type": "connection_init"})
            ack = await client.recv()
            assert ack["type"] == "connection_ack", ack
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame.get("type") == "ka":
                self.kas += 1
                continue
            return frame  # type: ignore[no-any-return]

    async def subscribe(
        self, sub_id: str, channel: str, auth: dict[str, str] | None = None
    ) -> dict[str, Any]:
        await self.send(
            {
                "type": "subscribe",
                "id": sub_id,
                "channel": channel,
                "authorization": auth if auth is not None else {"x-api-key": API_KEY},
            }
        )
        return await self.recv()

    async def publish(
        self, op_id: str, channel: str, events: list[Any], auth: dict[str, str] | None = None
    ) -> dict[str, Any]:
        await self.send(
            {
                "type": "publish",
                "id": op_id,
                "channel": channel,
                "events": [json.dumps(e) for e in events],
                "authorization": auth if auth is not None else {"x-api-key": API_KEY},
            }
        )
        return await self.recv()

    async def close(self) -> None:
        await self.ws.close()
