"""Webhooks validated by the real SDK's ``validate_webhook`` (pusher spec §4)."""

from __future__ import annotations

import json
from typing import Any

import pusher
import pytest
from aiohttp import web

from tests.e2e.pusher_support import APP_ID, KEY, SECRET, Client, pusher_app, sdk
from tests.e2e.support import wait_until

VALIDATOR = pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET)


class Receiver:
    """A webhook receiver on an ephemeral port; ``statuses`` scripts its answers."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append((dict(request.headers), raw))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            body = VALIDATOR.validate_webhook(
                key=request.headers["X-Pusher-Key"],
                signature=request.headers["X-Pusher-Signature"],
                body=raw.decode(),
            )
            assert body is not None, "the SDK rejected the webhook"
            assert request.headers["Content-Type"] == "application/json"
            self.bodies.append(body)
        return web.Response(status=status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    def events(self) -> list[dict[str, Any]]:
        return [e for b in self.bodies for e in b["events"]]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


FAST = {"initial_backoff_s": 0.05, "max_backoff_s": 0.2, "retry_window_s": 3, "timeout_s": 2}


def hook(url: str, types: list[str], **extra: Any) -> dict[str, Any]:
    return {"url": url, "event_types": types, **extra}


async def test_all_event_types(start_gateway, receiver):
    types = [
        "channel_occupied",
        "channel_vacated",
        "member_added",
        "member_removed",
        "client_event",
        "cache_miss",
        "subscription_count",
    ]
    gw = await start_gateway(
        {
            "apis": [
                pusher_app(
                    enable_client_messages=True,
                    webhooks=[hook(receiver.url, types)],
                    webhook_delivery=FAST,
                )
            ]
        }
    )
    p = sdk(gw)
    a, b = await Client.connect(gw), await Client.connect(gw)
    await a.subscribe(
        "presence-room", p.authenticate("presence-room", a.socket_id, {"user_id": "1"})
    )
    await b.subscribe(
        "presence-room", p.authenticate("presence-room", b.socket_id, {"user_id": "2"})
    )
    await a.expect("pusher_internal:member_added")
    await b.send("client-hello", {"hi": True}, channel="presence-room")
    await a.expect("client-hello")
    await b.subscribe("cache-c")
    await b.expect("pusher:cache_miss")
    await b.close()
    await a.close()
    await wait_until(
        lambda: len([e for e in receiver.events() if e["name"] == "channel_vacated"]) == 2
    )
    events = receiver.events()
    room = [e for e in events if e["channel"] == "presence-room"]
    assert room == [
        {"name": "channel_occupied", "channel": "presence-room"},
        {"name": "member_added", "channel": "presence-room", "user_id": "1"},
        {"name": "member_added", "channel": "presence-room", "user_id": "2"},
        {
            "name": "client_event",
            "channel": "presence-room",
            "event": "client-hello",
            "data": '{"hi":true}',
            "socket_id": b.socket_id,
            "user_id": "2",
        },
        {"name": "member_removed", "channel": "presence-room", "user_id": "2"},
        {"name": "member_removed", "channel": "presence-room", "user_id": "1"},
        {"name": "channel_vacated", "channel": "presence-room"},
    ]
    cache = [e for e in events if e["channel"] == "cache-c"]
    assert cache == [
        {"name": "channel_occupied", "channel": "cache-c"},
        {"name": "subscription_count", "channel": "cache-c", "subscription_count": 1},
        {"name": "cache_miss", "channel": "cache-c"},
        {"name": "channel_vacated", "channel": "cache-c"},
        {"name": "subscription_count", "channel": "cache-c", "subscription_count": 0},
    ]
    assert all(isinstance(b["time_ms"], int) for b in receiver.bodies)


async def test_filters_send_only_matching_events(start_gateway, receiver):
    webhooks = [
        hook(
            receiver.url,
            ["channel_occupied"],
            filter={"channel_name_starts_with": "beta-", "channel_name_ends_with": "-app"},
            headers={"X-Custom": "v"},
        ),
    ]
    gw = await start_gateway({"apis": [pusher_app(webhooks=webhooks, webhook_delivery=FAST)]})
    c = await Client.connect(gw)
    for channel in ("beta-x", "beta-my-app", "alpha-app"):
        await c.subscribe(channel)
    await wait_until(lambda: len(receiver.events()) >= 1)
    await c.close()
    await gw.stop(grace_s=5)  # flushes the queues
    assert receiver.events() == [{"name": "channel_occupied", "channel": "beta-my-app"}]
    assert receiver.requests[0][0]["X-Custom"] == "v"


async def test_retries_keep_order_and_time(start_gateway, receiver):
    receiver.statuses = [500, 503]
    gw = await start_gateway(
        {
            "apis": [
                pusher_app(
                    webhooks=[hook(receiver.url, ["channel_occupied", "channel_vacated"])],
                    webhook_delivery=FAST,
                )
            ]
        }
    )
    c = await Client.connect(gw)
    await c.subscribe("c1")
    await c.send("pusher:unsubscribe", {"channel": "c1"})
    await c.subscribe("c1")
    await wait_until(
        lambda: (
            [e["name"] for e in receiver.events()]
            == ["channel_occupied", "channel_vacated", "channel_occupied"]
        )
    )
    assert len(receiver.requests) >= 3
    first = json.loads(receiver.requests[0][1])
    assert receiver.bodies[0]["time_ms"] == first["time_ms"]  # the retried body kept its time
    metrics = gw.metrics.render().decode()
    assert 'sockway_pusher_webhooks_total{api="p",outcome="retried"} 2.0' in metrics


async def test_final_failures_are_counted(start_gateway, receiver):
    receiver.statuses = [400]
    down = "http://127.0.0.1:9/nothing-listens-here"
    gw = await start_gateway(
        {
            "apis": [
                pusher_app(
                    webhooks=[
                        hook(receiver.url, ["channel_occupied"]),
                        hook(down, ["channel_occupied"]),
                    ],
                    webhook_delivery={**FAST, "retry_window_s": 0.5},
                )
            ]
        }
    )
    c = await Client.connect(gw)
    await c.subscribe("lost")

    def failed() -> float:
        for line in gw.metrics.render().decode().splitlines():
            if line.startswith('sockway_pusher_webhooks_total{api="p",outcome="failed"}'):
                return float(line.split()[-1])
        return 0

    await wait_until(lambda: failed() == 2)
    assert len(receiver.requests) == 1  # 400 is not retried
    await c.send("pusher:ping")
    await c.expect("pusher:pong")  # the gateway keeps serving


class LambdaApi:
    """A Lambda-API-compatible server: ``POST /2015-03-31/functions/{name}/invocations``."""

    def __init__(self) -> None:
        self.invocations: list[tuple[str, str, dict[str, Any]]] = []

    async def invoke(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        self.invocations.append(
            (request.match_info["name"], request.headers.get("X-Amz-Invocation-Type", ""), payload)
        )
        return web.json_response({"ok": True}, status=200)


async def test_lambda_webhook(start_gateway):
    api = LambdaApi()
    app = web.Application()
    app.router.add_post("/2015-03-31/functions/{name}/invocations", api.invoke)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        webhooks = [
            {
                "lambda_function": "pusher-hooks",
                "event_types": ["channel_occupied"],
                "lambda": {
                    "region": "eu-west-1",
                    "endpoint_url": f"http://127.0.0.1:{port}",
                    "access_key_id": "AKIDTEST",
                    "secret_access_key": "secret",
                },
            }
        ]
        gw = await start_gateway({"apis": [pusher_app(webhooks=webhooks, webhook_delivery=FAST)]})
        c = await Client.connect(gw)
        await c.subscribe("lam")
        await wait_until(lambda: len(api.invocations) == 1)
        name, invocation_type, payload = api.invocations[0]
        assert name == "pusher-hooks" and invocation_type == "RequestResponse"
        # The function re-computes the HMAC over JSON.stringify(payload) (compact JSON).
        body = json.dumps(payload["payload"], separators=(",", ":"))
        headers = payload["headers"]
        assert VALIDATOR.validate_webhook(
            key=headers["X-Pusher-Key"], signature=headers["X-Pusher-Signature"], body=body
        )
        assert payload["payload"]["events"] == [{"name": "channel_occupied", "channel": "lam"}]
    finally:
        await runner.cleanup()


async def test_queue_overflow_is_counted_as_dropped(start_gateway):
    down = "http://127.0.0.1:9/nothing-listens-here"
    delivery = {**FAST, "max_pending_events": 1}
    gw = await start_gateway(
        {
            "apis": [
                pusher_app(
                    webhooks=[hook(down, ["channel_occupied", "channel_vacated"])],
                    webhook_delivery=delivery,
                )
            ]
        }
    )
    c = await Client.connect(gw)
    await c.subscribe("c")  # occupied: being retried
    await c.send("pusher:unsubscribe", {"channel": "c"})  # vacated: queued
    await c.subscribe("c")  # occupied: over the bound

    def outcome(name: str) -> float:
        for line in gw.metrics.render().decode().splitlines():
            if line.startswith(f'sockway_pusher_webhooks_total{{api="p",outcome="{name}"}}'):
                return float(line.split()[-1])
        return 0

    await wait_until(lambda: outcome("dropped") == 1)
    await gw.stop(grace_s=5)  # shutdown: no more backoff, the rest is recorded as failed
    assert outcome("failed") == 2
