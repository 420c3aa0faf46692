"""``runtime: nodejs`` behind a real gateway, in every handler slot (issue 15).

websocket routes and authorizer, events onPublish / onSubscribe and the AWS_LAMBDA authorizer,
a Pusher webhook handler — all JavaScript in Node.js workers. The fault cases of the process
runtime (timeout, ``process.exit``, heap blow-up, thrown error) give the caller API Gateway's
error frame while a bystander client keeps getting answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import StartGateway

pytestmark = pytest.mark.timeout(120)

FUNCS = """
console.log('init of funcs', process.pid);
exports.connect = async () => ({ statusCode: 200 });
exports.echo = async (event) => {
  const body = JSON.parse(event.body);
  console.log('echo got', body.data);
  return { statusCode: 200, body: 'echo:' + body.data };
};
exports.who = async (event, context) => ({
  statusCode: 200,
  body: JSON.stringify({
    pid: process.pid, cwd: process.cwd(), name: context.functionName,
    greeting: process.env.GREETING ?? null, handler: process.env._HANDLER,
    sameId: context.awsRequestId === event.requestContext.requestId,
  }),
});
exports.sleepy = () => new Promise((resolve) => setTimeout(resolve, 30000));
exports.exits = () => process.exit(3);
exports.hog = async () => { const a = []; for (;;) a.push(new Array(1e6).fill(1.5)); };
exports.fails = async () => { throw new Error('handler bug on purpose'); };
exports.authorize = async (event) => {
  const token = event.queryStringParameters.token ?? '';
  if (token === 'raise') throw new Error('Unauthorized');
  return {
    principalId: 'user-' + token,
    policyDocument: { Version: '2012-10-17', Statement: [{
      Action: 'execute-api:Invoke', Effect: token.startsWith('good') ? 'Allow' : 'Deny',
      Resource: event.methodArn }] },
    context: { runtime: 'node' },
  };
};
"""

_ID = r"[A-Za-z0-9_\-]{15}="


def node_api(code_dir: Path, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "n",
        "type": "websocket",
        "stage": "dev",
        "runtime": "nodejs",
        "code_dir": str(code_dir),
        "routes": {
            "$connect": "funcs.connect",
            "echo": {"handler": "funcs.echo", "route_response": True},
            "who": {"handler": "funcs.who", "route_response": True},
            "sleepy": {"handler": "funcs.sleepy", "route_response": True, "timeout_s": 1},
            "exits": {"handler": "funcs.exits", "route_response": True},
            "hog": {"handler": "funcs.hog", "route_response": True, "memory_mb": 128},
            "fails": {"handler": "funcs.fails", "route_response": True},
        },
    }
    config.update(extra)
    return config


def funcs_dir(tmp_path: Path, sub: str = "funcs") -> Path:
    directory = tmp_path / sub
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "funcs.js").write_text(FUNCS)
    return directory


def base(config: dict[str, Any]) -> dict[str, Any]:
    return {"apis": [config], "nodejs": {"aws_sdk": []}}


async def ask(ws: Any, action: str, **body: Any) -> str:
    await ws.send(json.dumps({"action": action, **body}))
    return str(await asyncio.wait_for(ws.recv(), 20))


async def test_routes_run_in_node_workers(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway(base(node_api(funcs_dir(tmp_path), environment={"GREETING": "hi"})))
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        assert await ask(ws, "echo", data="hello") == "echo:hello"
        info = json.loads(await ask(ws, "who"))
        again = json.loads(await ask(ws, "who"))
    assert info["pid"] != os.getpid() and again["pid"] == info["pid"]  # warm reuse
    assert info["cwd"] == str(tmp_path / "funcs") and info["name"] == "n-who"
    assert info["greeting"] == "hi" and info["handler"] == "funcs.who" and info["sameId"]
    assert "GREETING" not in os.environ  # the function's environment stays in its workers
    await gw.stop(grace_s=5)
    status = Path(f"/proc/{info['pid']}/status")
    assert not status.exists() or "State:\tZ" in status.read_text()


async def test_authorizer_in_node(start_gateway: StartGateway, tmp_path: Path) -> None:
    config = node_api(
        funcs_dir(tmp_path),
        authorizer={
            "handler": "funcs.authorize",
            "identity_source": ["route.request.querystring.token"],
        },
    )
    gw = await start_gateway(base(config))
    url = f"ws://127.0.0.1:{gw.port}/dev"
    async with websockets.connect(f"{url}?token=good1") as ws:
        assert await ask(ws, "echo", data="in") == "echo:in"
    for token, status in (("bad", 403), ("raise", 401)):
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(f"{url}?token={token}"):
                pass
        assert info.value.response.status_code == status


@pytest.mark.parametrize(
    ("action", "message", "report"),
    [
        ("sleepy", "Endpoint request timed out", "Status: timeout"),
        ("exits", "Internal server error", "Error Type: Runtime.ExitError"),
        ("hog", "Internal server error", "Error Type: Runtime.OutOfMemory"),
        ("fails", "Internal server error", ""),
    ],
)
async def test_faults_leave_a_bystander_unaffected(
    start_gateway: StartGateway,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    action: str,
    message: str,
    report: str,
) -> None:
    caplog.set_level(logging.INFO)
    gw = await start_gateway(base(node_api(funcs_dir(tmp_path))))
    url = f"ws://127.0.0.1:{gw.port}/dev"
    async with websockets.connect(url) as victim, websockets.connect(url) as bystander:
        assert await ask(bystander, "echo", data="before") == "echo:before"
        await victim.send(json.dumps({"action": action}))
        assert await ask(bystander, "echo", data="during") == "echo:during"
        frame = str(await asyncio.wait_for(victim.recv(), 30))
        assert re.fullmatch(
            r'\{"message": "' + message + r'", "connectionId":"' + _ID + r'", "requestId":"'
            r"" + _ID + r'"\}',
            frame,
        )
        # Again, on a fresh worker (or, for 'fails', the same one), then the victim goes on.
        await victim.send(json.dumps({"action": action}))
        assert str(await asyncio.wait_for(victim.recv(), 30)).startswith(
            '{"message": "' + message + '"'
        )
        assert await ask(victim, "echo", data="after") == "echo:after"
        assert await ask(bystander, "echo", data="still") == "echo:still"
    reports = [r.getMessage() for r in caplog.records if "REPORT RequestId" in r.getMessage()]
    assert any(f"[n-{action}]" in line and report in line for line in reports), reports
    errors = "\n".join(r.getMessage() for r in caplog.records if r.name == "sockway.apigw")
    if action == "exits":
        assert "Error: Runtime exited with error: exit status 3" in errors
    if action == "hog":
        assert "Runtime.OutOfMemory" in errors
        assert "JavaScript heap out of memory" in caplog.text
    if action == "fails":
        assert "Invoke Error \t" in caplog.text and '"errorMessage":"handler bug on purpose"' in (
            caplog.text
        )
    if action == "sleepy":
        assert "Task timed out after 1.00 seconds" in caplog.text


async def test_missing_handler_file_is_a_config_error(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    from sockway.gateway.config import ConfigError

    config = node_api(funcs_dir(tmp_path))
    config["routes"]["echo"] = "nowhere.handler"
    with pytest.raises(ConfigError, match=r"routes\.echo: no nowhere\.js, nowhere\.mjs"):
        await start_gateway(base(config))


async def test_missing_node_fails_the_start_with_a_clear_message(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    from sockway.gateway.config import ConfigError

    config = base(node_api(funcs_dir(tmp_path)))
    config["nodejs"]["node"] = "/nonexistent/bin/node"
    with pytest.raises(ConfigError) as err:
        await start_gateway(config)
    assert err.value.problems == [
        "nodejs.node: runtime: nodejs needs Node.js (18.19, 20.6 or newer), but '/nonexistent/bin/node' "
        "was not found; install Node.js or set nodejs.node to the executable's path"
    ]
