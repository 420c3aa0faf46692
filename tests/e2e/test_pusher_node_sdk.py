"""The Node server SDK (npm ``pusher``) against sockway: its request signing (no ``body_md5``
on GET), its ``/apps/{id}/users/...`` terminate path, its compact presence ``channel_data`` and
its strict webhook validator (``Content-Type`` exactly ``application/json``) (pusher spec §2-§4)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.e2e.pusher_support import Client, pusher_app, sdk
from tests.e2e.support import wait_until
from tests.e2e.test_pusher_webhooks import FAST, Receiver

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("js") / "pusher_node_sdk.js"


async def node_sdk(port: int, **cmd: Any) -> Any:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        str(port),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(json.dumps(cmd).encode()), 20)
    result = json.loads(out)
    assert proc.returncode == 0, result
    return result


async def test_node_sdk_http_api(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    c = await Client.connect(gw)
    await c.subscribe("news")
    await c.send("pusher:signin", sdk(gw).authenticate_user(c.socket_id, {"id": "42"}))
    await c.expect("pusher:signin_success")
    result = await node_sdk(gw.port, op="http")
    assert result["trigger"] == {
        "status": 200,
        "body": {"channels": {"news": {"subscription_count": 1}}},
    }
    assert result["batch"] == {"status": 200, "body": {}}
    assert result["channels"] == {"status": 200, "body": {"channels": {"news": {}}}}
    assert result["channel"] == {"status": 200, "body": {"occupied": True, "subscription_count": 1}}
    assert result["terminate"] == {"status": 200, "body": {}}
    assert json.loads((await c.expect("ev"))["data"]) == {"a": 1}
    assert json.loads((await c.expect("b"))["data"]) == {"b": 2}
    assert (await c.expect("pusher:error"))["data"]["code"] == 4009
    with pytest.raises(websockets.ConnectionClosed):
        await c.recv()


async def test_node_sdk_presence_auth(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    c = await Client.connect(gw)
    auth = await node_sdk(
        gw.port,
        op="auth",
        socket_id=c.socket_id,
        channel="presence-n",
        data={"user_id": "1", "user_info": {"name": "A"}},
    )
    assert auth["channel_data"] == '{"user_id":"1","user_info":{"name":"A"}}'  # compact JSON
    ok = await c.subscribe("presence-n", auth)
    assert ok["event"] == "pusher_internal:subscription_succeeded"


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


async def test_node_sdk_webhook_validator(start_gateway, receiver):
    gw = await start_gateway(
        {
            "apis": [
                pusher_app(
                    webhooks=[{"url": receiver.url, "event_types": ["channel_occupied"]}],
                    webhook_delivery=FAST,
                )
            ]
        }
    )
    c = await Client.connect(gw)
    await c.subscribe("hooked")
    await wait_until(lambda: len(receiver.requests) == 1)
    headers, body = receiver.requests[0]
    lower = {k.lower(): v for k, v in headers.items()}
    result = await node_sdk(gw.port, op="webhook", headers=lower, body=body.decode())
    assert result == {"valid": True, "events": [{"name": "channel_occupied", "channel": "hooked"}]}
