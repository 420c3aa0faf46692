"""The ``sockway`` command as a user runs it: a real subprocess, real sockets."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

SOCKWAY = [sys.executable, "-m", "sockway"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(
    args: list[str], cwd: Path, ready_line: str = "listening"
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    proc = await asyncio.create_subprocess_exec(
        *SOCKWAY,
        "serve",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            if not line:
                raise AssertionError("sockway exited early:\n" + "".join(lines))
            lines.append(line)
            if line.startswith("Try it") or (ready_line in line and "--config" in args):
                break
        # Read the rest of the banner (until a blank pause) without blocking forever.
        while True:
            try:
                line = (await asyncio.wait_for(proc.stdout.readline(), 0.3)).decode()
            except TimeoutError:
                break
            if not line:
                break
            lines.append(line)
        yield proc, lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_demo_session_works_as_the_banner_says(tmp_path: Path) -> None:
    port = _free_port()
    async with serving(["--port", str(port)], cwd=tmp_path) as (_, lines):
        banner = "".join(lines)
        url = re.search(r"wscat -c (\S+)", banner)
        assert url is not None, banner
        assert url.group(1) == f"ws://127.0.0.1:{port}/demo"
        assert "development CA:" in banner
        async with websockets.connect(url.group(1)) as a, websockets.connect(url.group(1)) as b:
            await a.send('{"action":"echo","data":"hello"}')
            assert await asyncio.wait_for(a.recv(), 10) == "hello"
            await a.send('{"action":"broadcast","data":"hello everyone"}')
            for ws in (a, b):
                message = await asyncio.wait_for(ws.recv(), 10)
                assert '"data": "hello everyone"' in str(message)
            await a.send("what?")
            assert "Unknown action" in str(await asyncio.wait_for(a.recv(), 10))
    assert (tmp_path / ".sockway" / "tls" / "ca.pem").exists()


BAD_CONFIG = """
listen: 127.0.0.1:not-a-port
apis:
  - name: chat
    type: websocket
    code_dir: ./handlers
    routes:
      sendMessage: missing_module.handler
      echo: {handler: ok.nothere, route_response: true}
  - name: later
    type: pusher
"""


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SOCKWAY, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_check_config_prints_every_problem_with_its_key_path(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "ok.py").write_text("def handler(event, context):\n    return {}\n")
    (tmp_path / "sockway.yaml").write_text(BAD_CONFIG)
    result = _run(tmp_path, "check-config", "sockway.yaml")
    assert result.returncode == 1
    assert "listen: '127.0.0.1:not-a-port' is not host:port" in result.stderr
    assert "apis[1].app_id: Field required" in result.stderr

    # Once the structure is valid, handlers are resolved and every bad one is listed.
    fixed = BAD_CONFIG.replace("not-a-port", "8080").split("  - name: later")[0]
    (tmp_path / "sockway.yaml").write_text(fixed)
    result = _run(tmp_path, "check-config", "sockway.yaml")
    assert result.returncode == 1
    assert "apis[0].routes.sendMessage: module 'missing_module' not found" in result.stderr
    assert "apis[0].routes.echo: module 'ok' has no function 'nothere'" in result.stderr
    # `serve` refuses the same file with the same messages.
    served = _run(tmp_path, "serve", "--config", "sockway.yaml")
    assert served.returncode == 1
    assert served.stderr == result.stderr

    (tmp_path / "sockway.yaml").write_text(
        fixed.replace("missing_module.handler", "ok.handler").replace("ok.nothere", "ok.handler")
    )
    result = _run(tmp_path, "check-config", "sockway.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


HANDLERS = """
import os


def disconnect(event, context):
    ctx = event["requestContext"]
    with open(os.environ["DISCONNECT_LOG"], "a") as f:
        f.write(f"{ctx['connectionId']} {ctx['disconnectStatusCode']}\\n")
    return {"statusCode": 200}
"""


async def test_sigterm_drains_with_disconnect_and_port_in_use_is_reported(
    tmp_path: Path,
) -> None:
    port = _free_port()
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "life.py").write_text(HANDLERS)
    log = tmp_path / "disconnects.log"
    (tmp_path / "sockway.yaml").write_text(f"""
listen: 127.0.0.1:{port}
apis:
  - name: app
    type: websocket
    stage: dev
    code_dir: ./h
    environment: {{DISCONNECT_LOG: "{log}"}}
    routes:
      $disconnect: life.disconnect
""")
    async with serving(["--config", "sockway.yaml"], cwd=tmp_path) as (proc, _):
        clients = [await websockets.connect(f"ws://127.0.0.1:{port}/dev") for _ in range(2)]

        second = _run(tmp_path, "serve", "--config", "sockway.yaml")
        assert second.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}: address already in use" in second.stderr

        proc.send_signal(signal.SIGTERM)
        for ws in clients:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all(line.endswith(" 1001") for line in lines)


def test_version_and_help() -> None:
    result = subprocess.run(
        [*SOCKWAY, "--help"], capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert result.returncode == 0
    assert "serve" in result.stdout and "check-config" in result.stdout


def test_check_config_messages_speak_the_files_language(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "listen: 127.0.0.1:99999\n"
        "log_levl: INFO\n"
        "tls: {certifcate: auto}\n"
        "apis:\n"
        "  - {name: a, type: websocket, stage: dev, routes: {$connect: 5, echo: {handler: x.y, route_respons: true}}}\n"
        "  - {name: e, type: events, auth_providers: [{type: API_KEY, kyes: [k]}]}\n"
    )
    result = _run(tmp_path, "check-config", "bad.yaml")
    assert result.returncode == 1
    err = result.stderr
    assert "listen: port 99999 is out of range (0-65535; 0 picks a free port)" in err
    assert "apis[0].routes.$connect: expected a handler (module.function) or a mapping" in err
    assert "RouteSpec" not in err and "instance of" not in err  # no pydantic class names
    assert "log_levl: unknown key (did you mean 'log_level'?)" in err
    assert "tls.certifcate: unknown key (did you mean 'certificate'?)" in err
    assert "apis[0].routes.echo.route_respons: unknown key (did you mean 'route_response'?)" in err
    assert "apis[1].auth_providers[0].kyes: unknown key (did you mean 'keys'?)" in err


def test_check_config_checks_several_files(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("listen: nowhere\n")
    # Two projects whose handler modules share a name: each file is checked on its own.
    for project in ("one", "two"):
        (tmp_path / project).mkdir()
        (tmp_path / project / "app.py").write_text(
            "def handler(event, context):\n    return None\n"
        )
        (tmp_path / project / "sockway.yaml").write_text(
            "apis:\n  - {name: a, type: websocket, stage: dev, code_dir: ., routes: {$default: app.handler}}\n"
        )
    result = _run(tmp_path, "check-config", "one/sockway.yaml", "bad.yaml", "two/sockway.yaml")
    assert result.returncode == 1
    assert result.stdout == "one/sockway.yaml: OK (1 API(s))\ntwo/sockway.yaml: OK (1 API(s))\n"
    assert "bad.yaml: invalid configuration:\n  listen: 'nowhere' is not host:port" in result.stderr
    ok = _run(tmp_path, "check-config", "one/sockway.yaml", "two/sockway.yaml")
    assert ok.returncode == 0, ok.stderr


def test_soketi_config_refuses_what_would_change_clients(tmp_path: Path) -> None:
    (tmp_path / "soketi.json").write_text('{"pathPrefix": "/ws", "appManager.driver": "mysql"}')
    result = _run(tmp_path, "serve", "--soketi-config", "soketi.json")
    assert result.returncode == 1
    assert "soketi.json: pathPrefix: not supported" in result.stderr
    assert "soketi.json: appManager.driver: 'mysql' is not supported" in result.stderr
    both = _run(tmp_path, "serve", "--soketi-config", "soketi.json", "--config", "x.yaml")
    assert both.returncode == 1 and "give one of them" in both.stderr
