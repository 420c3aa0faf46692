from __future__ import annotations

from pathlib import Path

import websockets

from tests.conftest import StartGateway, write_handlers

ECHO = """
def handler(event, context):
    return {"statusCode": 200, "body": "echo:" + event["body"]}
"""


async def test_two_way_route_round_trip(start_gateway: StartGateway, tmp_path: Path) -> None:
    code = write_handlers(tmp_path / "h", {"echo_mod.py": ECHO})
    gw = await start_gateway(
        {
            "apis": [
                {
                    "name": "t",
                    "type": "websocket",
                    "stage": "dev",
                    "code_dir": str(code),
                    "routes": {"echo": {"handler": "echo_mod.handler", "route_response": True}},
                }
            ]
        }
    )
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == 'echo:{"action":"echo"}'
