"""wscat, the client of the AWS tutorials, against a real gateway (plain and TLS, one port)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import StartGateway
from tests.e2e.support import api, handlers_dir

WSCAT = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "wscat"


async def _wscat(tmp_path: Path, *args: str) -> str:
    # Node drops piped stdout on process.exit(), which wscat calls on close; files are
    # written synchronously, so capture into one. wscat also exits at once when its stdin
    # ends, so stdin is a pipe that stays open, like a terminal.
    out = tmp_path / "wscat.out"
    with out.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            str(WSCAT),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
        )
        await asyncio.wait_for(proc.wait(), 30)
    return out.read_text()


async def test_wscat_plain_and_tls(start_gateway: StartGateway, tmp_path: Path) -> None:
    assert WSCAT.exists(), "run `make test` (it installs wscat with npm)"
    gw = await start_gateway(
        {"tls": {"certificate": "auto"}, "apis": [api(handlers_dir(tmp_path))]}
    )
    out = await _wscat(
        tmp_path,
        "-c",
        f"ws://127.0.0.1:{gw.port}/dev",
        "-x",
        '{"action":"echo","via":"ws"}',
        "-w",
        "1",
    )
    assert '{"action":"echo","via":"ws"}' in out
    assert gw.tls is not None and gw.tls.ca_file is not None
    out = await _wscat(
        tmp_path,
        "--ca",
        str(gw.tls.ca_file),
        "-c",
        f"wss://localhost:{gw.port}/dev",
        "-x",
        '{"action":"echo","via":"wss"}',
        "-w",
        "1",
    )
    assert '{"action":"echo","via":"wss"}' in out
    out = await _wscat(tmp_path, "-c", f"ws://127.0.0.1:{gw.port}/dev?status=403", "-x", "x")
    assert "403" in out
