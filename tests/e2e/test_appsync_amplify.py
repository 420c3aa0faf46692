"""The real AWS Amplify JS ``events`` client (npm ``aws-amplify``) against sockway over ``wss://``.

Amplify always opens ``wss://`` (spec §1.2), so the gateway serves TLS with ``certificate:
auto`` on the main port and Node trusts the development CA through ``NODE_EXTRA_CA_CERTS``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

from tests.conftest import StartGateway
from tests.e2e.appsync_support import API_KEY, EventsClient, events_api

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "js" / "amplify_events.mjs"


async def test_amplify_subscribes_and_publishes_over_wss_and_https(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is required (make install)"
    assert (ROOT / "node_modules" / "aws-amplify").is_dir(), "run npm install (make install)"
    gw = await start_gateway({"tls": {"certificate": "auto"}, "apis": [events_api()]})
    assert gw.tls is not None and gw.tls.ca_file is not None
    # A raw subscriber too: Amplify's publishes reach other clients.
    raw = await EventsClient.connect(gw.port)
    assert (await raw.subscribe("raw", "/default/*"))["type"] == "subscribe_success"
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(gw.tls.ca_file)}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        f"https://localhost:{gw.port}/event",
        API_KEY,
        "/default/amplify",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 0, err.decode() + out.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["received"] == [{"via": "websocket", "n": 1}, {"via": "http", "n": 2}]
    assert result["publishHttp"] is None  # Amplify returns undefined when nothing failed
    assert result["badError"] == (
        "Connection failed: BadRequestException: Channel namespace 'nowhere' not found"
    )
    got = [json.loads((await raw.recv())["event"]) for _ in range(2)]
    assert got == [{"via": "websocket", "n": 1}, {"via": "http", "n": 2}]
    await raw.close()
