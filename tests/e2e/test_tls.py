"""TLS: a user-supplied certificate on its own listener; domainName names the TLS port."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import boto3
import websockets

from sockway.transport.tls import auto_certificate
from tests.conftest import StartGateway
from tests.e2e.support import api, handlers_dir, of_type, recorded


async def test_user_certificate_on_a_separate_tls_listener(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    # A certificate made elsewhere (here by the same helper, into another directory).
    material = auto_certificate(tmp_path / "pki", ["localhost"])
    assert material.ca_file is not None
    gw = await start_gateway(
        {
            "tls": {
                "listen": "127.0.0.1:0",
                "certificate": str(material.cert_file),
                "key": str(material.key_file),
            },
            "apis": [api(handlers_dir(tmp_path))],
        }
    )
    plain_port, tls_port = gw.listeners[0].port, gw.listeners[1].port
    assert plain_port != tls_port
    client_tls = ssl.create_default_context(cafile=str(material.ca_file))
    async with websockets.connect(f"wss://localhost:{tls_port}/dev", ssl=client_tls) as ws:
        await ws.send('{"action":"echo","over":"tls"}')
        assert await ws.recv() == '{"action":"echo","over":"tls"}'
        connect = of_type(recorded(), "CONNECT")[0]
        assert connect["headers"]["X-Forwarded-Proto"] == "https"
        # domainName names the TLS listener, so https://{domainName}/{stage} reaches sockway.
        domain = connect["requestContext"]["domainName"]
        assert domain == f"127.0.0.1:{tls_port}"
        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=f"https://{domain}/dev",
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
            verify=str(material.ca_file),
        )
        conn_id = connect["requestContext"]["connectionId"]
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"via https")
        assert await ws.recv() == "via https"
    # The plain listener still serves ws:// and no TLS.
    async with websockets.connect(f"ws://127.0.0.1:{plain_port}/dev") as ws:
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'
