"""Helpers for the Pusher end-to-end tests: app config, a raw protocol client, the SDK."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pusher
import websockets

from sockway.gateway.gateway import Gateway

APP_ID, KEY, SECRET = "123", "app-key", "app-secret"


def pusher_app(**overrides: Any) -> dict[str, Any]:
    app: dict[str, Any] = {
        "name": "p",
        "type": "pusher",
        "app_id": APP_ID,
        "key": KEY,
        "secret": SECRET,
    }
    app.update(overrides)
    return app


class Sdk:
    """The real ``pusher`` SDK; its blocking HTTP calls run in a thread (``await p.trigger``),
    its pure functions (``authenticate``...) directly."""

    _BLOCKING = frozenset(
        {
            "trigger",
            "trigger_batch",
            "channels_info",
            "channel_info",
            "users_info",
            "terminate_user_connections",
            "send_to_user",
        }
    )

    def __init__(self, client: pusher.Pusher) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if name not in self._BLOCKING:
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attr, *args, **kwargs)

        return call


def sdk(gateway: Gateway, app_id: str = APP_ID, key: str = KEY, secret: str = SECRET) -> Any:
    return Sdk(
        pusher.Pusher(
            app_id=app_id, key=key, secret=secret, host="127.0.0.1", port=gateway.port, ssl=False
        )
    )


class Client:
    """A Pusher protocol v7 client over ``websockets``: frames in, decoded dicts out."""

    def __init__(self, ws: websockets.ClientConnection, socket_id: str, timeout: float):
        self.ws = ws
        self.socket_id = socket_id
        self.activity_timeout = timeout

    @classmethod
    async def connect(cls, gateway: Gateway, key: str = KEY) -> Client:
        ws = await websockets.connect(f"ws://127.0.0.1:{gateway.port}/app/{key}?protocol=7")
        hello = json.loads(await ws.recv())
        assert hello["event"] == "pusher:connection_established", hello
        data = json.loads(hello["data"])
        return cls(ws, data["socket_id"], data["activity_timeout"])

    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        frame: dict[str, Any] = {"event": event, "data": data if data is not None else {}}
        if channel is not None:
            frame["channel"] = channel
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))  # type: ignore[no-any-return]

    async def expect(self, event: str, timeout: float = 5) -> dict[str, Any]:
        """The next frame, which must be ``event``."""
        frame = await self.recv(timeout)
        assert frame["event"] == event, frame
        return frame

    async def subscribe(self, channel: str, auth: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send("pusher:subscribe", {"channel": channel, **(auth or {})})
        return await self.recv()

    async def close(self) -> None:
        await self.ws.close()
