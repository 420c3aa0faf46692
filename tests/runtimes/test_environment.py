"""``AWS_EC2_METADATA_DISABLED`` in the functions' environment (``runtimes.environment``).

Without credentials, botocore (and the SDK for JavaScript) ask the EC2 instance metadata service
at 169.254.169.254 — timeouts off EC2, and traffic off the loopback. sockway sets the variable
to ``true`` for every runtime unless the user's environment or the API's ``environment`` sets
it, or the machine is an EC2 instance (where the instance role comes from that service). A real gateway, a websockets client and a handler that reports what it sees, in each
runtime that runs user code locally.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import websockets

from sockway.runtimes import environment
from tests.conftest import StartGateway, write_handlers

pytestmark = pytest.mark.timeout(90)

PY = """
import json
import os


def connect(event, context):
    return {"statusCode": 200}


def imds(event, context):
    from botocore.utils import InstanceMetadataFetcher

    # The fetcher botocore's credential chain builds for each new client reads it now.
    return {
        "statusCode": 200,
        "body": json.dumps({
            "env": os.environ.get("AWS_EC2_METADATA_DISABLED"),
            "botocore_disabled": InstanceMetadataFetcher()._disabled,
        }),
    }
"""

JS = """
exports.connect = async () => ({ statusCode: 200 });
exports.imds = async () => ({
  statusCode: 200,
  body: JSON.stringify({ env: process.env.AWS_EC2_METADATA_DISABLED ?? null }),
});
"""


def api(tmp_path: Path, runtime: str, **extra: Any) -> dict[str, Any]:
    if runtime == "nodejs":
        code = tmp_path / "fns"
        code.mkdir(parents=True, exist_ok=True)
        (code / "fns.js").write_text(JS)
    else:
        code = write_handlers(tmp_path / "fns", {"fns.py": PY})
    config: dict[str, Any] = {
        "name": "imds",
        "type": "websocket",
        "stage": "dev",
        "runtime": runtime,
        "code_dir": str(code),
        "routes": {
            "$connect": "fns.connect",
            "imds": {"handler": "fns.imds", "route_response": True},
        },
    }
    config.update(extra)
    return config


async def seen(start_gateway: StartGateway, config: dict[str, Any]) -> dict[str, Any]:
    gw = await start_gateway({"apis": [config], "nodejs": {"aws_sdk": []}})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send(json.dumps({"action": "imds"}))
        return json.loads(await asyncio.wait_for(ws.recv(), 30))  # type: ignore[no-any-return]


RUNTIMES = ["inprocess", "process", "nodejs"]


def _need_node(runtime: str) -> None:
    if runtime == "nodejs":
        assert shutil.which("node") is not None, "node is required (make install)"


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_handlers_do_not_ask_the_instance_metadata_service(
    start_gateway: StartGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    _need_node(runtime)
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    info = await seen(start_gateway, api(tmp_path, runtime))
    assert info["env"] == "true"
    if runtime != "nodejs":
        assert info["botocore_disabled"] is True  # botocore's own reading of it


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_the_users_environment_wins(
    start_gateway: StartGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    _need_node(runtime)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")  # e.g. on EC2 with a role
    info = await seen(start_gateway, api(tmp_path, runtime))
    assert info["env"] == "false"


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_the_apis_environment_wins(
    start_gateway: StartGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    _need_node(runtime)
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    config = api(tmp_path, runtime, environment={"AWS_EC2_METADATA_DISABLED": "False"})
    info = await seen(start_gateway, config)
    assert info["env"] == "False"


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_on_ec2_the_instance_role_keeps_working(
    start_gateway: StartGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    """An EC2 instance (its DMI vendor, as on Nitro) keeps the metadata service: handlers
    there take the instance role's credentials from it."""
    _need_node(runtime)
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    dmi = tmp_path / "dmi"
    dmi.mkdir()
    (dmi / "sys_vendor").write_text("Amazon EC2\n")
    monkeypatch.setattr(environment, "DMI", dmi)
    info = await seen(start_gateway, api(tmp_path, runtime))
    assert info["env"] is None


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"dmi/sys_vendor": "Amazon EC2\n"}, True),
        ({"dmi/board_vendor": "Amazon EC2\n", "dmi/sys_vendor": "Amazon\n"}, True),
        ({"uuid": "ec2e1916-9099-7caf-fd21-012345abcdef\n"}, True),
        ({"dmi/sys_vendor": "QEMU\n", "uuid": "4b6a0e6c-0000-0000-0000-000000000000\n"}, False),
        ({}, False),
    ],
)
def test_on_ec2_reads_what_aws_says_identifies_an_instance(
    tmp_path: Path, files: dict[str, str], expected: bool
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert environment.on_ec2(tmp_path / "dmi", tmp_path / "uuid") is expected
