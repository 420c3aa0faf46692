"""The @connections API driven by boto3's apigatewaymanagementapi client (apigw spec §4)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import websockets
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed

from tests.conftest import StartGateway, write_handlers
from tests.e2e.support import api, handlers_dir, of_type, recorded, wait_until

SELF_POST = """
import os
import boto3

RESULTS = []
EVENTS = []


def connect(event, context):
    ctx = event["requestContext"]
    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url=f"https://{ctx['domainName']}/{ctx['stage']}"
    )
    try:
        client.post_to_connection(ConnectionId=ctx["connectionId"], Data=b"too early")
        RESULTS.append("sent")
    except client.exceptions.GoneException:
        RESULTS.append("GoneException")
    return {"statusCode": 200}


def reply(event, context):
    ctx = event["requestContext"]
    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url=f"https://{ctx['domainName']}/{ctx['stage']}"
    )
    client.post_to_connection(ConnectionId=ctx["connectionId"], Data=b"posted:" + event["body"].encode())
    return {"statusCode": 200}
"""


def _client(port: int, stage: str = "dev", **kwargs: Any) -> Any:
    kwargs.setdefault("aws_access_key_id", "AKIDEXAMPLE")
    kwargs.setdefault("aws_secret_access_key", "secret")
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{port}/{stage}",
        region_name="us-east-1",
        **kwargs,
    )


async def test_post_get_delete_and_gone(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    client = _client(gw.port)
    async with websockets.connect(
        f"ws://127.0.0.1:{gw.port}/dev", user_agent_header="agent/1"
    ) as ws:
        conn_id = of_type(recorded(), "CONNECT")[0]["requestContext"]["connectionId"]
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"hello")
        assert await ws.recv() == "hello"
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data="text é")
        assert await ws.recv() == "text é"

        info = await asyncio.to_thread(client.get_connection, ConnectionId=conn_id)
        assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "agent/1"}
        now = dt.datetime.now(dt.UTC)
        assert abs((now - info["ConnectedAt"]).total_seconds()) < 30
        assert info["LastActiveAt"] >= info["ConnectedAt"]

        response = await asyncio.to_thread(client.delete_connection, ConnectionId=conn_id)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000

    await wait_until(lambda: len(of_type(recorded(), "DISCONNECT")) == 1)
    ctx = of_type(recorded(), "DISCONNECT")[0]["requestContext"]
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (
        1000,
        "Connection Closed Normally",
    )
    for call, kwargs in (
        (client.post_to_connection, {"Data": b"late"}),
        (client.get_connection, {}),
        (client.delete_connection, {}),
    ):
        with pytest.raises(client.exceptions.GoneException):
            await asyncio.to_thread(call, ConnectionId=conn_id, **kwargs)
    # Never existed, with characters that need percent-encoding.
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.post_to_connection, ConnectionId="Ab+c/d==", Data=b"x")


async def test_payload_over_128kb_is_413(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    client = _client(gw.port)
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev", max_size=None) as ws:
        conn_id = of_type(recorded(), "CONNECT")[0]["requestContext"]["connectionId"]
        with pytest.raises(client.exceptions.PayloadTooLargeException):
            await asyncio.to_thread(
                client.post_to_connection, ConnectionId=conn_id, Data=b"x" * (128 * 1024 + 1)
            )
        await asyncio.to_thread(
            client.post_to_connection, ConnectionId=conn_id, Data=b"y" * (128 * 1024)
        )
        assert await ws.recv() == "y" * (128 * 1024)


async def test_wrong_stage_is_forbidden(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    client = _client(gw.port, stage="other")
    with pytest.raises(ClientError) as info:
        await asyncio.to_thread(client.post_to_connection, ConnectionId="abc=", Data=b"x")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


async def test_post_during_connect_is_gone_and_handlers_reach_https_domain_name(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    code = write_handlers(tmp_path / "h", {"selfpost.py": SELF_POST})
    config = {
        "name": "t",
        "type": "websocket",
        "stage": "dev",
        "code_dir": str(code),
        "routes": {"$connect": "selfpost.connect", "$default": "selfpost.reply"},
    }
    # TLS on the same port: handlers build https://{domainName}/{stage} like the AWS tutorial.
    gw = await start_gateway({"tls": {"certificate": "auto"}, "apis": [config]})
    import sys

    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        assert sys.modules["selfpost"].RESULTS == ["GoneException"]
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), 10) == "posted:ping"


async def test_sigv4_enforced_when_credentials_are_configured(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    config = api(
        handlers_dir(tmp_path),
        management={"credentials": [{"access_key_id": "AKIDLOCAL", "secret_access_key": "s3"}]},
    )
    gw = await start_gateway({"apis": [config]})
    good = _client(gw.port, aws_access_key_id="AKIDLOCAL", aws_secret_access_key="s3")
    wrong_secret = _client(gw.port, aws_access_key_id="AKIDLOCAL", aws_secret_access_key="no")
    unknown_key = _client(gw.port, aws_access_key_id="AKIDOTHER", aws_secret_access_key="s3")
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        conn_id = of_type(recorded(), "CONNECT")[0]["requestContext"]["connectionId"]
        await asyncio.to_thread(good.post_to_connection, ConnectionId=conn_id, Data=b"signed")
        assert await ws.recv() == "signed"
        for client, code in (
            (wrong_secret, "InvalidSignatureException"),
            (unknown_key, "UnrecognizedClientException"),
        ):
            with pytest.raises(ClientError) as info:
                await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"x")
            assert info.value.response["Error"]["Code"] == code
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # An unsigned request is refused too.
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{gw.port}/dev/@connections/{conn_id}", data=b"x"
        ) as response,
    ):
        assert response.status == 403
        assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


async def test_streamed_bodies_are_read_whole_and_bounded(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """A body that arrives in pieces (chunked, no Content-Length) is read to its end, not cut
    at the first buffered piece; one over the limit is refused with 413."""
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev", max_size=None) as ws:
        conn_id = of_type(recorded(), "CONNECT")[0]["requestContext"]["connectionId"]
        url = f"http://127.0.0.1:{gw.port}/dev/@connections/{conn_id}"

        async def pieces(total: int) -> AsyncIterator[bytes]:
            sent = 0
            while sent < total:
                n = min(8192, total - sent)
                yield b"z" * n
                sent += n
                await asyncio.sleep(0)  # separate writes: the server sees several chunks

        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=pieces(128 * 1024)) as r:
                assert r.status == 200
            assert await asyncio.wait_for(ws.recv(), 5) == "z" * (128 * 1024)
            async with http.post(url, data=pieces(128 * 1024 + 1)) as r:
                assert r.status == 413


def _signed_post(port: int, conn_id: str, *, service: str, region: str) -> dict[str, str]:
    """Headers of a POST @connections signed by botocore for ``service`` in ``region``."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"http://127.0.0.1:{port}/dev/@connections/{conn_id}"
    request = AWSRequest(method="POST", url=url, data=b"x")
    SigV4Auth(Credentials("AKIDLOCAL", "s3"), service, region).add_auth(request)
    return dict(request.headers.items())


async def test_sigv4_scope_must_be_execute_api_in_the_apis_region(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    # Issue 13 item 4: a signature made with the right secret but for s3, lambda or another
    # region is refused as AWS refuses it (403 InvalidSignatureException).
    config = api(
        handlers_dir(tmp_path),
        region="eu-west-1",
        management={"credentials": [{"access_key_id": "AKIDLOCAL", "secret_access_key": "s3"}]},
    )
    gw = await start_gateway({"apis": [config]})
    keys = {"aws_access_key_id": "AKIDLOCAL", "aws_secret_access_key": "s3"}
    home = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{gw.port}/dev",
        region_name="eu-west-1",
        **keys,
    )
    elsewhere = _client(gw.port, **keys)  # us-east-1
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        conn_id = of_type(recorded(), "CONNECT")[0]["requestContext"]["connectionId"]
        await asyncio.to_thread(home.post_to_connection, ConnectionId=conn_id, Data=b"home")
        assert await ws.recv() == "home"
        with pytest.raises(ClientError) as info:
            await asyncio.to_thread(elsewhere.post_to_connection, ConnectionId=conn_id, Data=b"x")
        assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert info.value.response["Error"]["Message"] == (
            "Credential should be scoped to a valid region, not 'us-east-1'. "
        )
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        async with aiohttp.ClientSession() as session:
            for service in ("s3", "lambda", "appsync"):
                headers = _signed_post(gw.port, conn_id, service=service, region="eu-west-1")
                async with session.post(
                    f"http://127.0.0.1:{gw.port}/dev/@connections/{conn_id}",
                    data=b"x",
                    headers=headers,
                ) as response:
                    assert response.status == 403, service
                    assert response.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
                    assert (await response.json())["message"] == (
                        "Credential should be scoped to correct service: 'execute-api'. "
                    )
        # Nothing of the refused requests reached the client.
        await asyncio.to_thread(home.post_to_connection, ConnectionId=conn_id, Data=b"last")
        assert await ws.recv() == "last"


async def test_non_ascii_content_sha256_is_403(start_gateway: StartGateway, tmp_path: Path) -> None:
    # Issue 13 item 7: the header arrives as latin-1 text; the compare must not raise (500).
    config = api(
        handlers_dir(tmp_path),
        management={"credentials": [{"access_key_id": "AKIDLOCAL", "secret_access_key": "s3"}]},
    )
    gw = await start_gateway({"apis": [config]})
    headers = _signed_post(gw.port, "abc%3D", service="execute-api", region="us-east-1")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        f"POST /dev/@connections/abc%3D HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n{head}".encode()
        + b"X-Amz-Content-SHA256: "
        + "é".encode() * 32
        + b"\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"403", answer
    assert b"x-amzn-ErrorType: InvalidSignatureException" in rest


async def test_non_utf8_data_is_sent_as_a_binary_frame(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    # Issue 13 item 9: bytes that are not UTF-8 were written as a text frame, which a
    # conforming client fails with 1007. They go as a binary frame; UTF-8 stays text.
    from urllib.parse import quote

    from tests.e2e.rawws import RawClient

    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    client = _client(gw.port)
    binary = b"\xff\xfe\x00 not utf-8 \xc3\x28"
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        conn_id = of_type(recorded(), "CONNECT")[0]["requestContext"]["connectionId"]
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=binary)
        assert await ws.recv() == binary  # bytes: a binary frame, and the connection lives
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data="é ok")
        assert await ws.recv() == "é ok"
        base = f"http://127.0.0.1:{gw.port}/dev"
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{base}/@connections/{quote(conn_id, safe='')}/channels/c") as r:
                assert r.status == 204
            async with http.post(f"{base}/@channels/c", data=binary) as r:
                assert r.status == 200
            assert await ws.recv() == binary
            async with http.post(f"{base}/@channels/c", data="ü".encode()) as r:
                assert r.status == 200
            assert await ws.recv() == "ü"
    # The aiohttp (keep-alive) transport writes the same frame: opcode 2.
    raw = await RawClient.connect(gw.port, "/dev", after="/health")
    conn_id = of_type(recorded(), "CONNECT")[-1]["requestContext"]["connectionId"]
    await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=binary)
    assert await asyncio.wait_for(raw.read_frame(), 5) == (2, binary)
    raw.close()
