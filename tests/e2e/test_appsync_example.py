"""examples/events: the Powertools handler with its Python and Amplify clients."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import ssl
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import StartGateway

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "events"
KEY = "da2-sockwaylocaldevelopmentkey"


async def start_example(start_gateway: StartGateway) -> Any:
    config = yaml.safe_load((EXAMPLE / "sockway.yaml").read_text())
    config.pop("listen")
    return await start_gateway(config, EXAMPLE)


async def test_python_client(start_gateway: StartGateway) -> None:
    gw = await start_example(start_gateway)
    spec = importlib.util.spec_from_file_location("events_example_client", EXAMPLE / "client.py")
    assert spec is not None and spec.loader is not None
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    tls = ssl.create_default_context(cafile=str(gw.tls.ca_file))
    result = await client.run(f"https://localhost:{gw.port}/event", KEY, tls)
    assert result["received"] == [{"text": "what the ****"}, {"text": "hello over HTTP"}]
    assert result["publish"]["type"] == "publish_success"
    assert [f["index"] for f in result["publish"]["failed"]] == [1]
    assert result["publish"]["failed"][0]["message"] == "ValueError - text is required"
    assert result["http"]["failed"] == []
    assert result["refused"]["type"] == "subscribe_error"
    assert result["refused"]["errors"][0]["errorType"] == "UnauthorizedException"


async def test_amplify_client(start_gateway: StartGateway) -> None:
    gw = await start_example(start_gateway)
    node = shutil.which("node")
    assert node is not None
    proc = await asyncio.create_subprocess_exec(
        node,
        str(EXAMPLE / "amplify_client.mjs"),
        f"https://localhost:{gw.port}/event",
        KEY,
        cwd=ROOT,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(gw.tls.ca_file)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 0, err.decode()
    received = json.loads(out.decode().strip().splitlines()[-1])["received"]
    assert received == [{"text": "hello from   Amplify"}, {"text": "****, HTTP works too"}]
