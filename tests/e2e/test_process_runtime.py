"""``runtime: process``: handlers in isolated worker processes (issue 3, part 1).

A real gateway, real websockets clients, real worker processes: failures of one function (timeout,
``os._exit``, memory blow-up) give the caller the API Gateway error frame while another client
keeps getting answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import StartGateway, write_handlers

FUNCS = """
import json
import logging
import os
import sys
import time

logger = logging.getLogger()
logger.setLevel(logging.INFO)
print("init of funcs", os.getpid())


def connect(event, context):
    return {"statusCode": 200}


def echo(event, context):
    body = json.loads(event["body"])
    print("echo got", body.get("data"))
    logger.info("logged through logging")
    return {"statusCode": 200, "body": "echo:" + str(body.get("data"))}


def who(event, context):
    keys = ["GREETING", "ONLY_A", "ONLY_B", "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "_HANDLER", "LAMBDA_TASK_ROOT"]
    info = {k: os.environ.get(k) for k in keys}
    info.update(pid=os.getpid(), cwd=os.getcwd(), path0=sys.path[0],
                function_name=context.function_name,
                memory=context.memory_limit_in_mb,
                remaining=context.get_remaining_time_in_millis(),
                request_id=context.aws_request_id == event["requestContext"]["requestId"])
    return {"statusCode": 200, "body": json.dumps(info)}


def sleepy(event, context):
    time.sleep(30)
    return {"statusCode": 200, "body": "woke up"}


def exits(event, context):
    os._exit(3)


def sys_exits(event, context):
    sys.exit(2)


def hog(event, context):
    chunks = []
    while True:
        chunks.append(bytearray(16 * 1024 * 1024))


def fails(event, context):
    raise ValueError("handler bug on purpose")


def authorize(event, context):
    token = event["queryStringParameters"].get("token", "")
    if token == "raise":
        raise Exception("Unauthorized")
    effect = "Allow" if token.startswith("good") else "Deny"
    return {
        "principalId": "user-" + token,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect,
                           "Resource": event["methodArn"]}],
        },
        "context": {"pid": os.getpid()},
    }
"""

_ID = r"[A-Za-z0-9_\-]{15}="


def process_api(
    code_dir: Path, name: str = "p", stage: str = "dev", **extra: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name,
        "type": "websocket",
        "stage": stage,
        "runtime": "process",
        "code_dir": str(code_dir),
        "routes": {
            "$connect": "funcs.connect",
            "echo": {"handler": "funcs.echo", "route_response": True},
            "who": {"handler": "funcs.who", "route_response": True},
            "sleepy": {"handler": "funcs.sleepy", "route_response": True, "timeout_s": 1},
            "exits": {"handler": "funcs.exits", "route_response": True},
            "sysexits": {"handler": "funcs.sys_exits", "route_response": True},
            "hog": {"handler": "funcs.hog", "route_response": True, "memory_mb": 128},
            "fails": {"handler": "funcs.fails", "route_response": True},
        },
    }
    config.update(extra)
    return config


def funcs_dir(tmp_path: Path, sub: str = "funcs") -> Path:
    return write_handlers(tmp_path / sub, {"funcs.py": FUNCS})


async def ask(ws: Any, action: str, **body: Any) -> str:
    await ws.send(json.dumps({"action": action, **body}))
    return str(await asyncio.wait_for(ws.recv(), 20))


async def test_route_round_trip_runs_in_a_worker_with_lambda_context(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [process_api(funcs_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        assert await ask(ws, "echo", data="hi") == "echo:hi"
        info = json.loads(await ask(ws, "who"))
        again = json.loads(await ask(ws, "who"))
    import os

    assert info["pid"] != os.getpid()
    assert again["pid"] == info["pid"]  # the warm worker is reused
    assert info["function_name"] == info["AWS_LAMBDA_FUNCTION_NAME"] == "p-who"
    assert info["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128" and info["memory"] == 128
    assert info["AWS_REGION"] == "us-east-1"
    assert info["_HANDLER"] == "funcs.who"
    code_dir = str((tmp_path / "funcs").resolve())
    assert info["cwd"] == info["path0"] == info["LAMBDA_TASK_ROOT"] == code_dir
    assert 0 < info["remaining"] <= 29_000
    assert info["request_id"] is True
    assert "funcs" not in __import__("sys").modules  # never imported into the gateway


async def test_gateway_stop_ends_its_workers(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [process_api(funcs_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        pid = json.loads(await ask(ws, "who"))["pid"]
    await gw.stop(grace_s=5)
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "State:\tZ" in status.read_text()


async def test_authorizer_decision_in_a_worker(start_gateway: StartGateway, tmp_path: Path) -> None:
    config = process_api(
        funcs_dir(tmp_path),
        authorizer={
            "handler": "funcs.authorize",
            "identity_source": ["route.request.querystring.token"],
        },
    )
    gw = await start_gateway({"apis": [config]})
    base = f"ws://127.0.0.1:{gw.port}/dev"
    async with websockets.connect(f"{base}?token=good1") as ws:
        assert await ask(ws, "echo", data="in") == "echo:in"
    for token, status in (("bad", 403), ("raise", 401)):
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(f"{base}?token={token}"):
                pass
        assert info.value.response.status_code == status


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("sleepy", "Endpoint request timed out"),
        ("exits", "Internal server error"),
        ("sysexits", "Internal server error"),
        ("hog", "Internal server error"),
        ("fails", "Internal server error"),
    ],
)
async def test_failing_function_gets_error_frame_while_others_keep_answering(
    start_gateway: StartGateway,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    action: str,
    message: str,
) -> None:
    caplog.set_level(logging.INFO)
    gw = await start_gateway({"apis": [process_api(funcs_dir(tmp_path))]})
    url = f"ws://127.0.0.1:{gw.port}/dev"
    async with websockets.connect(url) as victim, websockets.connect(url) as other:
        await victim.send(json.dumps({"action": action}))
        assert await ask(other, "echo", data="still here") == "echo:still here"
        frame = str(await asyncio.wait_for(victim.recv(), 20))
        assert re.fullmatch(
            r'\{"message": "' + message + r'", "connectionId":"' + _ID + r'", "requestId":"'
            r"" + _ID + r'"\}',
            frame,
        )
        # The failed function works again on a fresh worker (or, for 'fails', the same one).
        await victim.send(json.dumps({"action": action}))
        assert str(await asyncio.wait_for(victim.recv(), 20)).startswith(
            '{"message": "' + message + '"'
        )
        assert await ask(victim, "echo", data="after") == "echo:after"
    expected = {
        "sleepy": "Status: timeout",
        "exits": "Error Type: Runtime.ExitError",
        "sysexits": "Error Type: Runtime.ExitError",
        "hog": "Error Type: Runtime.OutOfMemory",
        "fails": "",
    }[action]
    reports = [r.getMessage() for r in caplog.records if "REPORT RequestId" in r.getMessage()]
    assert any(f"[p-{action}]" in line and expected in line for line in reports), reports
    errors = "\n".join(r.getMessage() for r in caplog.records if r.name == "sockway.apigw")
    if action == "exits":
        assert "Runtime.ExitError: RequestId: " in errors
        assert "Error: Runtime exited with error: exit status 3" in errors
    if action == "hog":
        assert "Runtime.OutOfMemory" in errors
    if action == "sleepy":
        assert "Task timed out after 1.00 seconds" in caplog.text


async def test_environments_do_not_leak_between_functions(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    a = process_api(
        funcs_dir(tmp_path, "a"), "a", "a", environment={"GREETING": "hello", "ONLY_A": "1"}
    )
    b = process_api(
        funcs_dir(tmp_path, "b"), "b", "b", environment={"GREETING": "salut", "ONLY_B": "2"}
    )
    gw = await start_gateway({"apis": [a, b]})
    async with (
        websockets.connect(f"ws://127.0.0.1:{gw.port}/a") as wa,
        websockets.connect(f"ws://127.0.0.1:{gw.port}/b") as wb,
    ):
        info_a = json.loads(await ask(wa, "who"))
        info_b = json.loads(await ask(wb, "who"))
    assert (info_a["GREETING"], info_a["ONLY_A"], info_a["ONLY_B"]) == ("hello", "1", None)
    assert (info_b["GREETING"], info_b["ONLY_A"], info_b["ONLY_B"]) == ("salut", None, "2")
    assert info_a["AWS_LAMBDA_FUNCTION_NAME"] == "a-who"
    assert info_b["AWS_LAMBDA_FUNCTION_NAME"] == "b-who"
    import os

    assert "GREETING" not in os.environ  # nor into the gateway


async def test_reserved_concurrency_throttles_like_lambda(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = process_api(funcs_dir(tmp_path))
    config["routes"]["sleepy"] = {
        "handler": "funcs.sleepy",
        "route_response": True,
        "timeout_s": 3,
        "reserved_concurrency": 1,
    }
    gw = await start_gateway({"apis": [config]})
    url = f"ws://127.0.0.1:{gw.port}/dev"
    async with websockets.connect(url) as first, websockets.connect(url) as second:
        await first.send('{"action":"sleepy"}')
        # Wait until the first invocation holds the only slot (its START line is logged).
        deadline = asyncio.get_running_loop().time() + 10
        while "START RequestId" not in caplog.text:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        frame = await ask(second, "sleepy")
        assert frame.startswith('{"message": "Internal server error"')
        assert "TooManyRequestsException: Rate Exceeded." in caplog.text
        assert str(await asyncio.wait_for(first.recv(), 20)).startswith(
            '{"message": "Endpoint request timed out"'
        )


async def test_handler_logs_are_framed_by_start_end_report(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gw = await start_gateway({"apis": [process_api(funcs_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        assert await ask(ws, "echo", data="one") == "echo:one"
        assert await ask(ws, "echo", data="two") == "echo:two"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[p-echo]")]
    text = "\n".join(lines)
    rids = re.findall(r"START RequestId: (\S+) Version: \$LATEST", text)
    assert len(rids) == 2
    assert re.search(r"\[p-echo\] init of funcs \d+", text)  # init output, before START
    for rid in rids:
        block = [line for line in lines if rid in line]
        assert block[0] == f"[p-echo] START RequestId: {rid} Version: $LATEST"
        assert any(line.startswith(f"[p-echo] [{rid}] echo got ") for line in block)
        assert any(
            f"[{rid}] [INFO]\t" in line and "logged through logging" in line for line in block
        )
        assert block[-2] == f"[p-echo] END RequestId: {rid}"
        assert re.fullmatch(
            rf"\[p-echo\] REPORT RequestId: {rid}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms"
            r"\tMemory Size: 128 MB\tMax Memory Used: \d+ MB(\tInit Duration: \d+\.\d\d ms)?",
            block[-1],
        )
    first, second = (
        next(line for line in lines if f"REPORT RequestId: {rid}" in line) for rid in rids
    )
    assert "Init Duration" in first and "Init Duration" not in second  # cold, then warm
    # The worker's own peak memory (VmHWM): an interpreter holds several MB, and far less
    # than the gateway process it was spawned from.
    used = int(re.findall(r"Max Memory Used: (\d+) MB", second)[0])
    assert 5 <= used <= 128


RELOAD_CONFIG = """
apis:
  - name: live
    type: websocket
    runtime: process
    code_dir: ./code
    routes:
      hello: {handler: app.hello, route_response: true}
      pinned: {handler: app.hello, route_response: true, runtime: inprocess}
"""


async def test_serve_reload_picks_up_an_edited_handler(tmp_path: Path) -> None:
    import socket
    import sys

    code = write_handlers(
        tmp_path / "code",
        {
            "app.py": "from words import WORD\n\ndef hello(event, context):\n"
            "    return {'statusCode': 200, 'body': WORD}\n",
            "words.py": "WORD = 'version one'\n",
        },
    )
    (tmp_path / "sockway.yaml").write_text(RELOAD_CONFIG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sockway",
        "serve",
        "--reload",
        "--config",
        "sockway.yaml",
        "--port",
        str(port),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []
    listening = asyncio.Event()

    async def read_output() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            output.append(raw.decode())
            if "listening" in output[-1]:
                listening.set()

    reader = asyncio.get_running_loop().create_task(read_output())
    try:
        await asyncio.wait_for(listening.wait(), 30)
        async with websockets.connect(f"ws://127.0.0.1:{port}/dev") as ws:
            assert await ask(ws, "hello") == "version one"
            # An imported module, not the handler's own; same size, within the same second as
            # the import: a cached .pyc would look valid, so workers compile from source.
            (code / "words.py").write_text("WORD = 'version two'\n")
            deadline = asyncio.get_running_loop().time() + 20
            while (answer := await ask(ws, "hello")) != "version two":
                assert answer == "version one"
                assert asyncio.get_running_loop().time() < deadline, "".join(output)
                await asyncio.sleep(0.1)
            assert proc.returncode is None  # the same gateway, the same connection
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
        await asyncio.wait_for(reader, 10)
    text = "".join(output)
    assert "reloading live-hello" in text
    assert "--reload does not apply to in-process handler live-pinned" in text
    assert "[live-hello] START RequestId: " in text
    assert "[live-hello] END RequestId: " in text
    assert re.search(r"\[live-hello\] REPORT RequestId: \S+\tDuration: [\d.]+ ms", text)


CHATTY = """
import sys


def connect(event, context):
    return {"statusCode": 200}


def chatty(event, context):
    line = "x" * 999 + "\\n"  # 1,000 bytes a line
    for n in range(int(event["body"])):
        sys.stdout.write(line)
    return {"statusCode": 200, "body": "done"}
"""


async def test_one_invocation_logs_at_most_its_bound(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 13 item 12: 100 MB of a worker's stdout became 113 MB of gateway log. Past
    # MAX_LOG_BYTES_PER_INVOCATION the output is dropped, with a note where and how much.
    from sockway.runtimes.worker import MAX_LOG_BYTES_PER_INVOCATION

    caplog.set_level(logging.INFO)
    code = write_handlers(tmp_path / "chatty", {"chatty.py": CHATTY})
    config = process_api(
        code,
        routes={
            "$connect": "chatty.connect",
            "$default": {"handler": "chatty.chatty", "route_response": True},
        },
    )
    gw = await start_gateway({"apis": [config]})
    lines_over = MAX_LOG_BYTES_PER_INVOCATION // 1000 * 5  # five times the bound
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send(str(lines_over))
        assert await asyncio.wait_for(ws.recv(), 60) == "done"
        await ws.send("10")  # the next invocation has its own budget
        assert await asyncio.wait_for(ws.recv(), 60) == "done"
    await asyncio.sleep(0)  # nothing to wait for: the answer follows the logs' flush marker
    records = [r.getMessage() for r in caplog.records if r.name == "sockway.function"]
    rids = re.findall(r"START RequestId: (\S+)", "\n".join(records))[-2:]  # after $connect
    first = [m for m in records if f"[{rids[0]}]" in m]
    output = [m for m in first if m.endswith("x" * 999)]
    assert sum(len(m) for m in output) <= MAX_LOG_BYTES_PER_INVOCATION + 2000 * len(output)
    assert len(output) <= MAX_LOG_BYTES_PER_INVOCATION // 1000
    assert len(output) >= MAX_LOG_BYTES_PER_INVOCATION // 1000 - 1
    notes = [m for m in first if "[sockway:" in m]
    assert len(notes) == 2, notes
    assert "the rest of it is dropped" in notes[0]
    dropped = lines_over - len(output)
    assert f"dropped {dropped * 1000} bytes ({dropped} lines)" in notes[1]
    second = [m for m in records if f"[{rids[1]}]" in m]
    assert len([m for m in second if m.endswith("x" * 999)]) == 10
    assert not [m for m in second if "[sockway:" in m]
