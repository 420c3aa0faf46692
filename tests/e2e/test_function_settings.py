"""Per-function settings (issue 14, item 1): a route or authorizer sets its own
``environment``, ``code_dir``, ``timeout_s``, ``memory_mb``; one function's variables are never
visible to another, and in-process handlers refuse what they cannot keep.

A real gateway, real websockets clients, real worker processes (``runtime: process``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import websockets

from sockway.gateway.config import ConfigError, parse_config
from tests.conftest import StartGateway, write_handlers

ENV_PROBE = """
import json
import os

MARK = {mark!r}


def connect(event, context):
    return {{"statusCode": 200}}


def probe(event, context):
    keys = ["SHARED", "ONLY_A", "ONLY_B", "TABLE"]
    return {{"statusCode": 200, "body": json.dumps({{
        "mark": MARK,
        "env": {{k: os.environ.get(k) for k in keys}},
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }})}}
"""


def _api(tmp_path: Path) -> dict[str, Any]:
    # A module name of its own: the in-process check below imports it into this interpreter.
    a = write_handlers(tmp_path / "a", {"fsprobe.py": ENV_PROBE.format(mark="a")})
    b = write_handlers(tmp_path / "b", {"fsprobe.py": ENV_PROBE.format(mark="b")})
    return {
        "name": "fs",
        "type": "websocket",
        "runtime": "process",
        "code_dir": str(a),
        "environment": {"SHARED": "api", "TABLE": "api-table"},
        "routes": {
            "$connect": "fsprobe.connect",
            "a": {
                "handler": "fsprobe.probe",
                "route_response": True,
                "environment": {"ONLY_A": "secret-a", "TABLE": "table-a"},
                "memory_mb": 512,
                "timeout_s": 7,
            },
            "b": {
                "handler": "fsprobe.probe",
                "route_response": True,
                "code_dir": str(b),
                "environment": {"ONLY_B": "secret-b"},
            },
            "plain": {"handler": "fsprobe.probe", "route_response": True},
        },
    }


async def _ask(url: str, action: str) -> dict[str, Any]:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"action": action}))
        answer: dict[str, Any] = json.loads(await ws.recv())
        return answer


@pytest.mark.timeout(60)
async def test_each_function_sees_only_its_own_variables(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway({"apis": [_api(tmp_path)]})
    url = f"ws://127.0.0.1:{gateway.port}/dev"
    a = await _ask(url, "a")
    b = await _ask(url, "b")
    plain = await _ask(url, "plain")
    assert a["env"] == {"SHARED": "api", "ONLY_A": "secret-a", "ONLY_B": None, "TABLE": "table-a"}
    assert b["env"] == {"SHARED": "api", "ONLY_A": None, "ONLY_B": "secret-b", "TABLE": "api-table"}
    assert plain["env"] == {"SHARED": "api", "ONLY_A": None, "ONLY_B": None, "TABLE": "api-table"}
    # Own code_dir: route b runs b/app.py although the API's code_dir holds another app.py.
    assert (a["mark"], b["mark"], plain["mark"]) == ("a", "b", "a")
    assert (a["memory"], b["memory"]) == (512, 128)
    assert 5000 < a["remaining_ms"] <= 7000  # its own timeout_s
    assert 7000 < b["remaining_ms"] <= 29000  # the API's integration_timeout_s


def _problems(raw: dict[str, Any], base: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"apis": [raw]}, base)
    return info.value.problems


def test_inprocess_refuses_what_it_cannot_keep(tmp_path: Path) -> None:
    raw = _api(tmp_path)
    raw["runtime"] = "inprocess"
    raw["routes"]["b"]["runtime"] = "process"  # b keeps its variables: it has workers
    raw["routes"]["c"] = {"handler": "fsprobe.probe", "reserved_concurrency": 2}
    (line,) = _problems(raw, tmp_path)
    assert "routes.a.environment: a function's own variables need runtime: process" in line
    assert "routes.c.reserved_concurrency: needs runtime: process" in line
    assert "routes.b" not in line


def test_function_code_dir_is_relative_to_the_config_and_must_exist(tmp_path: Path) -> None:
    raw = _api(tmp_path)
    raw["routes"]["b"]["code_dir"] = "b"  # relative: resolved against the config's directory
    settings = parse_config({"apis": [raw]}, tmp_path)
    assert settings.apis[0].routes["b"].code_dir == (tmp_path / "b").resolve()
    raw["routes"]["b"]["code_dir"] = "missing"
    (line,) = _problems(raw, tmp_path)
    assert line.startswith("apis[0].routes.b: code_dir '")
    assert "does not exist" in line


HOOK = """
import json
import os


def record(event, context):
    with open(os.environ["HOOK_LOG"], "a") as out:
        out.write(json.dumps({"events": event["payload"]["events"],
                              "key": event["headers"]["X-Pusher-Key"],
                              "secret_b": os.environ.get("ONLY_B")}) + "\\n")
"""


@pytest.mark.timeout(60)
async def test_a_webhook_handler_has_its_own_settings(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    from tests.e2e.pusher_support import Client, pusher_app
    from tests.e2e.support import wait_until

    code = write_handlers(tmp_path / "hooks", {"hooks.py": HOOK})
    log = tmp_path / "hook.log"
    hook = {
        "handler": "hooks.record",
        "runtime": "process",
        "code_dir": str(code),
        "environment": {"HOOK_LOG": str(log)},
        "event_types": ["channel_occupied"],
    }
    app = pusher_app(webhooks=[hook], environment={"ONLY_B": "api-level"})
    gw = await start_gateway({"apis": [app]})
    client = await Client.connect(gw)
    await client.subscribe("news")
    await wait_until(log.exists, timeout=30)
    (line,) = log.read_text().splitlines()
    record = json.loads(line)
    assert record["events"] == [{"name": "channel_occupied", "channel": "news"}]
    assert record["secret_b"] == "api-level"  # the app's environment under the handler's
    await client.close()
    # What the other targets cannot use is refused with its key path.
    bad = {**hook, "handler": None, "url": "http://127.0.0.1:9/x"}
    del bad["handler"]
    with pytest.raises(ConfigError) as info:
        parse_config({"apis": [pusher_app(webhooks=[bad])]}, tmp_path)
    assert "only for a webhook with 'handler'" in info.value.problems[0]


EVENTS_HANDLER = """
import os


def on_publish(event, context):
    tag = {k: os.environ.get(k) for k in ("SHARED", "ONLY_A", "ONLY_B")}
    return {"events": [{"id": e["id"], "payload": {**e["payload"], "env": tag}}
                       for e in event["events"]]}
"""


@pytest.mark.timeout(60)
async def test_events_handlers_have_their_own_settings(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    from tests.e2e.appsync_support import EventsClient, events_api

    code = write_handlers(tmp_path / "ev", {"evh.py": EVENTS_HANDLER})
    api = events_api(
        code,
        runtime="process",
        environment={"SHARED": "api"},
        namespaces={
            "a": {"on_publish": {"handler": "evh.on_publish", "environment": {"ONLY_A": "1"}}},
            "b": {"on_publish": {"handler": "evh.on_publish", "environment": {"ONLY_B": "2"}}},
        },
    )
    gw = await start_gateway({"apis": [api]})
    subscriber = await EventsClient.connect(gw.port)
    publisher = await EventsClient.connect(gw.port)
    seen = {}
    for ns in ("a", "b"):
        ack = await subscriber.subscribe(f"s-{ns}", f"/{ns}/x")
        assert ack["type"] == "subscribe_success"
        published = await publisher.publish(f"p-{ns}", f"/{ns}/x", [{"n": 1}])
        assert published["type"] == "publish_success", published
        data = await subscriber.recv(timeout=30)
        seen[ns] = json.loads(data["event"])["env"]
    assert seen == {
        "a": {"SHARED": "api", "ONLY_A": "1", "ONLY_B": None},
        "b": {"SHARED": "api", "ONLY_A": None, "ONLY_B": "2"},
    }
    await subscriber.close()
    await publisher.close()
