"""Node.js handlers written the way public samples write them, with the clients they are used with.

- ``examples/chat-nodejs``: the shape of AWS's ``simple-websockets-chat-app`` (onconnect /
  sendmessage / ondisconnect with ``@aws-sdk/lib-dynamodb`` and
  ``@aws-sdk/client-apigatewaymanagementapi``, no ``node_modules`` of its own) against moto's
  DynamoDB, driven by wscat. The AWS SDK v3 is installed by the gateway with npm, once.
- A soketi-style Lambda webhook receiver (``exports.handler = async ({ payload, headers })``)
  verifying ``X-Pusher-Signature``, with pusher-js clients making channels occupied / vacated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.conftest import StartGateway
from tests.e2e.pusher_js import AuthServer, PusherJs
from tests.e2e.pusher_support import KEY, SECRET, pusher_app
from tests.e2e.test_chat_examples import dynamodb, example_config, table_eventually, table_ids

__all__ = ["dynamodb"]  # the fixture, shared with the Python chat's tests

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat-nodejs"
WSCAT = ROOT / "node_modules" / ".bin" / "wscat"
SDK = [
    "@aws-sdk/client-apigatewaymanagementapi",
    "@aws-sdk/client-dynamodb",
    "@aws-sdk/lib-dynamodb",
]

pytestmark = pytest.mark.timeout(300)  # the first test installs the AWS SDK with npm


@pytest.fixture(scope="session")
def sdk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One AWS SDK install per test session (the first gateway start performs it)."""
    return tmp_path_factory.mktemp("node-sdk")


class Wscat:
    """One interactive wscat session: lines typed on its stdin, its screen in a file (Node
    drops piped stdout at exit; a file is written synchronously). Without a terminal wscat
    prints only the messages it receives, without its "< " prompt and "Connected" notice."""

    def __init__(self, proc: asyncio.subprocess.Process, screen: Path) -> None:
        self.proc = proc
        self.screen = screen

    @classmethod
    async def connect(cls, url: str, screen: Path, *args: str) -> Wscat:
        with screen.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                str(WSCAT),
                *args,
                "-c",
                url,
                stdin=asyncio.subprocess.PIPE,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
            )
        return cls(proc, screen)

    async def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def wait_for(self, text: str, count: int = 1, timeout_s: float = 20) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.screen.read_text(errors="replace").count(text) < count:
            if loop.time() > deadline or self.proc.returncode is not None:
                raise AssertionError(f"wscat never showed {text!r}: {self.screen.read_text()}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # wscat exits when its input ends
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def test_chat_sample_with_wscat_and_the_aws_sdk(
    dynamodb: Any,
    start_gateway: StartGateway,
    tmp_path: Path,
    sdk_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert WSCAT.exists(), "run `make install` (it installs wscat with npm)"
    caplog.set_level(logging.INFO)
    code = tmp_path / "chat"  # outside the repository: no node_modules to fall back on
    shutil.copytree(CHAT, code)
    config = example_config(code, tmp_path)
    config["nodejs"] = {"aws_sdk": SDK, "sdk_dir": str(sdk_dir)}
    gateway = await start_gateway(config, base_dir=code)
    assert (sdk_dir / "node_modules" / "@aws-sdk" / "lib-dynamodb" / "package.json").is_file()
    url = f"ws://127.0.0.1:{gateway.port}/production"
    clients: list[Wscat] = []
    try:
        for i in range(3):
            before = await table_ids(dynamodb)
            clients.append(await Wscat.connect(url, tmp_path / f"wscat-{i}.out"))
            await _eventually_size(dynamodb, len(before) + 1)  # stored by onconnect
        ids = await table_ids(dynamodb)
        assert len(ids) == 3
        await clients[0].say('{"action": "sendmessage", "message": "hello from node"}')
        for client in clients:
            await client.wait_for("hello from node")
        # A connection that is gone but still stored is deleted by the next broadcast.
        stale = "Zm9vYmFyYmF6cXU="
        await asyncio.to_thread(dynamodb.put_item, Item={"connectionId": stale})
        await clients[1].say('{"action": "sendmessage", "message": "second"}')
        for client in clients:
            await client.wait_for("second")
        await table_eventually(dynamodb, ids, "stale connection deleted (GoneException)")
        assert "Found stale connection, deleting Zm9vYmFyYmF6cXU=" in caplog.text
        await clients[2].close()  # ondisconnect forgets it
        assert len(await _eventually_size(dynamodb, 2)) == 2
    finally:
        for client in clients:
            await client.close()


async def _eventually_size(table: Any, size: int) -> set[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(ids := await table_ids(table)) != size:
        assert loop.time() < deadline, f"the table still holds {ids}"
        await asyncio.sleep(0.05)
    return ids


async def test_a_missing_npm_is_reported_clearly(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.js").write_text("exports.handler = async () => ({ statusCode: 200 });")
    config = {
        "nodejs": {"npm": "no-such-npm-xyz", "aws_sdk": SDK, "sdk_dir": str(tmp_path / "sdk")},
        "apis": [
            {
                "name": "w",
                "type": "websocket",
                "stage": "dev",
                "runtime": "nodejs",
                "code_dir": str(code),
                "routes": {"$default": "index.handler"},
            }
        ],
    }
    await start_gateway(config)  # it starts: handlers that bundle their SDK keep working
    assert "npm ('no-such-npm-xyz') was not found" in caplog.text
    assert "set nodejs.aws_sdk: [] if your handlers bundle their dependencies" in caplog.text


async def test_the_npm_install_shows_its_progress(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first start installs the packages with npm and says so, with what it fetched; a
    second start with the same directory reuses them and installs nothing (issue 15)."""
    caplog.set_level(logging.INFO)
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.js").write_text(
        "const isNumber = require('is-number');\n"
        "exports.handler = async (event) => ({ statusCode: 200, body: String(isNumber(5)) });\n"
    )
    sdk_dir = tmp_path / "sdk"
    config = {
        "nodejs": {"aws_sdk": ["is-number"], "sdk_dir": str(sdk_dir)},
        "apis": [
            {
                "name": "w",
                "type": "websocket",
                "stage": "dev",
                "runtime": "nodejs",
                "code_dir": str(code),
                "routes": {"$default": {"handler": "index.handler", "route_response": True}},
            }
        ],
    }
    gw = await start_gateway(config)
    assert f"installing 1 npm package(s) for Node.js handlers into {sdk_dir}" in caplog.text
    fetched = re.search(
        r"installed the Node.js handlers' npm packages in [\d.]+ s \((\d+) files", caplog.text
    )
    assert fetched is not None and int(fetched.group(1)) >= 1, caplog.text
    assert (sdk_dir / "node_modules" / "is-number" / "package.json").is_file()
    async with websockets.connect(
        f"ws://127.0.0.1:{gw.port}/dev"
    ) as ws:  # the handler resolves the package
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), 30) == "true"
    await gw.stop(grace_s=5)
    caplog.clear()
    await start_gateway(config)
    assert "installing" not in caplog.text  # installed once


# -- a soketi-style Lambda webhook receiver, in Node.js ------------------------------------

WEBHOOK = """
const crypto = require('crypto');
const fs = require('fs');

exports.handler = async ({ payload, headers }) => {
  const expected = crypto.createHmac('sha256', process.env.PUSHER_APP_SECRET)
    .update(JSON.stringify(payload))
    .digest('hex');
  const signature = headers['X-Pusher-Signature'] ?? '';
  const valid = signature.length === expected.length &&
    crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(expected));
  if (!valid || headers['X-Pusher-Key'] !== process.env.PUSHER_APP_KEY) {
    throw new Error('invalid webhook signature');
  }
  for (const event of payload.events) {
    console.log('webhook', event.name, event.channel);
    fs.appendFileSync(process.env.OUT_FILE, JSON.stringify(event) + '\\n');
  }
  return { statusCode: 200 };
};
"""


async def start_webhooks(
    start_gateway: StartGateway, tmp_path: Path, secret: str
) -> tuple[Any, Path]:
    """A Pusher app whose webhook is the Node.js receiver above, knowing ``secret``."""
    code = tmp_path / "hooks"
    code.mkdir()
    (code / "webhook.js").write_text(WEBHOOK)
    out = tmp_path / "events.jsonl"
    out.touch()
    hook = {
        "handler": "webhook.handler",
        "runtime": "nodejs",
        "event_types": ["channel_occupied", "channel_vacated"],
    }
    app = pusher_app(
        code_dir=str(code),
        environment={"PUSHER_APP_SECRET": secret, "PUSHER_APP_KEY": KEY, "OUT_FILE": str(out)},
        webhooks=[hook],
        webhook_delivery={"initial_backoff_s": 0.05, "max_backoff_s": 0.1, "retry_window_s": 1},
    )
    gw = await start_gateway({"apis": [app], "nodejs": {"aws_sdk": []}})
    return gw, out


async def occupy_and_vacate(gw: Any, channel: str, wait_for: Path | None) -> None:
    """A pusher-js client subscribes to ``channel`` (occupied), then leaves it (vacated)."""
    auth = await AuthServer(None, {}).start()
    js = await PusherJs.start(gw.port, KEY, auth.url)
    try:
        await js.send(cmd="connect", id="ann")
        await js.wait_for(id="ann", type="connected")
        await js.send(cmd="subscribe", id="ann", channel=channel)
        await js.wait_for(id="ann", type="subscribed", channel=channel)
        if wait_for is not None:
            await _lines(wait_for, 1)
        await js.send(cmd="unsubscribe", id="ann", channel=channel)
    finally:
        await js.stop()
        await auth.stop()


async def test_soketi_style_node_webhook_verifies_the_signature(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gw, out = await start_webhooks(start_gateway, tmp_path, SECRET)
    await occupy_and_vacate(gw, "news", out)
    events = await _lines(out, 2)
    assert [(e["name"], e["channel"]) for e in events] == [
        ("channel_occupied", "news"),
        ("channel_vacated", "news"),
    ]
    assert "webhook channel_occupied news" in caplog.text  # the handler's console.log


async def test_a_receiver_with_another_secret_refuses_every_delivery(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gw, out = await start_webhooks(start_gateway, tmp_path, "not-the-app-secret")
    await occupy_and_vacate(gw, "news", None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while caplog.text.count("invalid webhook signature") < 2:  # both events, each refused
        assert loop.time() < deadline, caplog.text
        await asyncio.sleep(0.05)
    assert out.read_text() == ""


async def _lines(path: Path, count: int) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while len(lines := path.read_text().splitlines()) < count:
        assert loop.time() < deadline, f"the webhook handler wrote {lines}"
        await asyncio.sleep(0.05)
    return [json.loads(line) for line in lines]
