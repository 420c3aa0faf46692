"""onPublish / onSubscribe handlers written with Powertools' AppSyncEventsResolver, the
AWS_LAMBDA authorizer and API keys with expiry, end to end (spec §3.2, §3.5, §6)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import StartGateway, write_handlers
from tests.e2e.appsync_support import API_KEY, EventsClient, events_api
from tests.e2e.support import wait_until

# Written as for AWS Lambda, unchanged.
POWERTOOLS_APP = """
from aws_lambda_powertools.event_handler import AppSyncEventsResolver
from aws_lambda_powertools.event_handler.events_appsync.exceptions import UnauthorizedException
from aws_lambda_powertools.utilities.data_classes import AppSyncResolverEventsEvent

app = AppSyncEventsResolver()
EVENTS = []


@app.on_publish("/default/*")
def shout(payload):
    if payload.get("reject"):
        raise ValueError("rejected on purpose")
    return {**payload, "text": payload["text"].upper()}


@app.on_publish("/batch/*", aggregate=True)
def tenfold(payload):
    # Drops n == 0, fails n < 0, multiplies the rest.
    out = []
    for event in payload:
        n = event["payload"]["n"]
        if n < 0:
            out.append({"id": event["id"], "error": "negative"})
        elif n:
            out.append({"id": event["id"], "payload": {"n": n * 10}})
    return out


@app.on_publish("/batch/forbidden", aggregate=True)
def forbidden(payload):
    raise UnauthorizedException("not this channel")


@app.on_subscribe("/default/private/*")
def private():
    raise UnauthorizedException("private channel")


@app.on_subscribe("/default/*")
def subscribe_default():
    event: AppSyncResolverEventsEvent = app.current_event
    assert event.info.channel_namespace["name"] == "default"
    assert event.info.channel_segments[0] == "default"
    return None


@app.on_subscribe("/secure/*")
def subscribe_secure():
    return None


def handler(event, context):
    EVENTS.append(event)
    return app.resolve(event, context)
"""

AUTHORIZER = """
EVENTS = []


def handler(event, context):
    EVENTS.append(event)
    token = event["authorizationToken"]
    if token.startswith("allow-"):
        return {"isAuthorized": True, "handlerContext": {"user": token[6:]}}
    return {"isAuthorized": False}


BACKGROUND = []


def background(event, context):
    BACKGROUND.append(event)
    return {"events": []}  # ignored: EVENT invocations do not change the broadcast
"""


def recorded(module: str, name: str = "EVENTS") -> list[dict[str, Any]]:
    return getattr(sys.modules[module], name)  # type: ignore[no-any-return]


def handler_config(tmp_path: Path) -> dict[str, Any]:
    code = write_handlers(tmp_path / "fns", {"pt_app.py": POWERTOOLS_APP, "authz.py": AUTHORIZER})
    return events_api(
        code,
        auth_providers=[
            {
                "type": "API_KEY",
                "keys": [API_KEY, {"key": "da2-expired", "expires": "2020-01-01T00:00:00Z"}],
            },
            {"type": "AWS_LAMBDA", "handler": "authz.handler"},
        ],
        connection_auth_modes=["API_KEY", "AWS_LAMBDA"],
        default_publish_auth_modes=["API_KEY"],
        default_subscribe_auth_modes=["API_KEY"],
        namespaces={
            "default": {"on_publish": "pt_app.handler", "on_subscribe": "pt_app.handler"},
            "batch": {"on_publish": "pt_app.handler"},
            "secure": {
                "on_subscribe": "pt_app.handler",
                "publish_auth_modes": ["AWS_LAMBDA"],
                "subscribe_auth_modes": ["AWS_LAMBDA"],
            },
            "audit": {"on_publish": {"handler": "authz.background", "invoke_type": "EVENT"}},
        },
    )


async def test_powertools_per_item_transform_and_reject(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [handler_config(tmp_path)]})
    sub = await EventsClient.connect(gw.port)
    assert (await sub.subscribe("s", "/default/*"))["type"] == "subscribe_success"
    pub = await EventsClient.connect(gw.port)
    reply = await pub.publish(
        "p", "/default/room", [{"text": "hello"}, {"text": "x", "reject": True}]
    )
    assert reply["type"] == "publish_success"
    assert [s["index"] for s in reply["successful"]] == [0]
    (failed,) = reply["failed"]
    assert failed["index"] == 1 and failed["message"] == "ValueError - rejected on purpose"
    data = await sub.recv()
    assert data["id"] == "s" and json.loads(data["event"]) == {"text": "HELLO"}
    # The publish event has every key Powertools and the AppSync docs define (spec §6.3).
    publish = next(e for e in recorded("pt_app") if e["info"]["operation"] == "PUBLISH")
    assert set(publish) == {
        "identity",
        "result",
        "request",
        "info",
        "error",
        "prev",
        "stash",
        "outErrors",
        "events",
    }
    assert publish["info"] == {
        "channel": {"path": "/default/room", "segments": ["default", "room"]},
        "channelNamespace": {"name": "default"},
        "operation": "PUBLISH",
    }
    assert publish["identity"] is None  # API_KEY
    assert publish["request"]["headers"]["x-api-key"] == API_KEY
    assert [e["payload"] for e in publish["events"]] == [
        {"text": "hello"},
        {"text": "x", "reject": True},
    ]
    # Event ids are the identifiers of the publish response.
    assert [e["id"] for e in publish["events"]] == [
        reply["successful"][0]["identifier"],
        failed["identifier"],
    ]
    await sub.close()
    await pub.close()


async def test_powertools_aggregate_drop_fail_and_unauthorized(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [handler_config(tmp_path)]})
    sub = await EventsClient.connect(gw.port)
    assert (await sub.subscribe("s", "/batch/*"))["type"] == "subscribe_success"
    url = f"http://127.0.0.1:{gw.port}/event"
    async with aiohttp.ClientSession() as http:
        body = {"channel": "/batch/a", "events": ['{"n":1}', '{"n":0}', '{"n":-1}', '{"n":2}']}
        async with http.post(url, json=body, headers={"x-api-key": API_KEY}) as resp:
            assert resp.status == 200
            result = await resp.json()
        assert [f["index"] for f in result["failed"]] == [2]
        assert sorted(s["index"] for s in result["successful"]) == [0, 1, 3]
        assert [json.loads((await sub.recv())["event"]) for _ in range(2)] == [{"n": 10}, {"n": 20}]
        forbidden = {"channel": "/batch/forbidden", "events": ['{"n":1}']}
        async with http.post(url, json=forbidden, headers={"x-api-key": API_KEY}) as resp:
            assert resp.status == 403
            assert (await resp.json())["errors"][0]["errorType"] == "UnauthorizedException"
    reply = await sub.publish("p", "/batch/forbidden", [{"n": 1}])
    assert (
        reply["type"] == "publish_error"
        and reply["errors"][0]["errorType"] == "UnauthorizedException"
    )
    await sub.close()


async def test_powertools_on_subscribe_rejects(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [handler_config(tmp_path)]})
    c = await EventsClient.connect(gw.port)
    reply = await c.subscribe("p1", "/default/private/x")
    assert reply["type"] == "subscribe_error" and reply["id"] == "p1"
    assert reply["errors"][0]["errorType"] == "UnauthorizedException"
    assert (await c.subscribe("ok", "/default/public"))["type"] == "subscribe_success"
    subscribe = [e for e in recorded("pt_app") if e["info"]["operation"] == "SUBSCRIBE"][-1]
    assert subscribe["events"] is None and subscribe["info"]["channel"]["path"] == "/default/public"
    await c.close()


async def test_lambda_authorizer_and_handler_context(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [handler_config(tmp_path)]})
    host = f"127.0.0.1:{gw.port}"
    denied = await EventsClient.connect(
        gw.port, {"host": host, "Authorization": "deny-me"}, init=False
    )
    assert (await denied.recv())["type"] == "connection_error"
    c = await EventsClient.connect(gw.port, {"host": host, "Authorization": "allow-ana"})
    connect = recorded("authz")[-1]
    assert connect["authorizationToken"] == "allow-ana"
    assert connect["requestContext"]["operation"] == "EVENT_CONNECT"
    assert connect["requestContext"]["channel"] is None
    # secure allows AWS_LAMBDA only: an API key is refused there.
    assert (await c.subscribe("k", "/secure/a"))["errors"][0][
        "errorType"
    ] == "UnauthorizedException"
    assert (await c.subscribe("t", "/secure/*", {"Authorization": "allow-bo"}))[
        "type"
    ] == "subscribe_success"
    sub_req = recorded("authz")[-1]["requestContext"]
    assert (sub_req["operation"], sub_req["channel"], sub_req["channelNamespaceName"]) == (
        "EVENT_SUBSCRIBE",
        "/secure/*",
        "secure",
    )
    subscribe = [e for e in recorded("pt_app") if e["info"]["channel"]["path"] == "/secure/*"][-1]
    assert subscribe["identity"] == {
        "handlerContext": {"user": "bo"},
        "resolverContext": {"user": "bo"},
    }
    reply = await c.publish("p", "/secure/a", ["x"], {"Authorization": "allow-cy"})
    assert reply["type"] == "data"  # subscribed to /secure/* itself
    assert (await c.recv())["type"] == "publish_success"
    assert (await c.publish("q", "/secure/a", ["x"], {"Authorization": "deny"}))[
        "type"
    ] == "publish_error"
    await c.close()


async def test_api_key_expiry(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [handler_config(tmp_path)]})
    host = f"127.0.0.1:{gw.port}"
    expired = await EventsClient.connect(
        gw.port, {"host": host, "x-api-key": "da2-expired"}, init=False
    )
    assert (await expired.recv())["errors"][0]["errorType"] == "UnauthorizedException"
    c = await EventsClient.connect(gw.port)
    reply = await c.subscribe("s", "/default/a", {"x-api-key": "da2-expired"})
    assert reply["errors"][0]["errorType"] == "UnauthorizedException"
    await c.close()


async def test_event_invocation_does_not_change_the_broadcast(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [handler_config(tmp_path)]})
    c = await EventsClient.connect(gw.port)
    assert (await c.subscribe("s", "/audit/*"))["type"] == "subscribe_success"
    assert await c.publish("p", "/audit/log", [{"a": 1}]) == {
        "type": "data",
        "id": "s",
        "event": '{"a": 1}',
    }
    await wait_until(lambda: len(recorded("authz", "BACKGROUND")) == 1)
    assert recorded("authz", "BACKGROUND")[0]["events"][0]["payload"] == {"a": 1}
    await c.close()


async def test_powertools_handler_in_the_process_runtime(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    config = handler_config(tmp_path)
    config["namespaces"]["default"] = {
        "on_publish": {"handler": "pt_app.handler", "runtime": "process"},
        "on_subscribe": {"handler": "pt_app.handler", "runtime": "process"},
    }
    gw = await start_gateway({"apis": [config]})
    c = await EventsClient.connect(gw.port)
    assert (await c.subscribe("no", "/default/private/x"))["errors"][0][
        "errorType"
    ] == "UnauthorizedException"
    assert (await c.subscribe("s", "/default/*"))["type"] == "subscribe_success"
    data = await c.publish("p", "/default/room", [{"text": "from a worker"}])
    assert json.loads(data["event"]) == {"text": "FROM A WORKER"}
    await c.close()
