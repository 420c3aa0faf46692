"""OPENID_CONNECT, AMAZON_COGNITO_USER_POOLS (pyjwt, JWKS file) and AWS_IAM (SigV4 signed by
botocore, as the AWS SDKs and Amplify sign) end to end (appsync-events spec §3.3, §3.4)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import StartGateway
from tests.e2e.appsync_support import EventsClient, events_api

ISSUER = "https://idp.example.test"
POOL = "us-east-1_Example"
COGNITO_ISSUER = f"https://cognito-idp.us-east-1.amazonaws.com/{POOL}"
AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def keypair(tmp_path: Path) -> tuple[Any, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="RS256", use="sig")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return key, path


def token(key: Any, **claims: Any) -> str:
    now = int(time.time())
    body = {"iat": now, "exp": now + 600, "sub": "user-1", **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def jwt_api(jwks: Path) -> dict[str, Any]:
    return events_api(
        auth_providers=[
            {
                "type": "OPENID_CONNECT",
                "issuer": ISSUER,
                "client_id": "web-.*",
                "jwks_file": str(jwks),
            },
            {
                "type": "AMAZON_COGNITO_USER_POOLS",
                "user_pool_id": POOL,
                "app_id_client_regex": "app1",
                "jwks_file": str(jwks),
            },
        ]
    )


async def test_oidc_and_cognito_tokens(start_gateway: StartGateway, tmp_path: Path) -> None:
    key, jwks = keypair(tmp_path)
    gw = await start_gateway({"apis": [jwt_api(jwks)]})
    host = f"127.0.0.1:{gw.port}"
    oidc = token(key, iss=ISSUER, aud="web-app")
    c = await EventsClient.connect(gw.port, {"host": host, "Authorization": f"Bearer {oidc}"})
    assert (await c.subscribe("o", "/default/a", {"Authorization": oidc}))[
        "type"
    ] == "subscribe_success"
    # A Cognito access token: the client id is in client_id, not aud.
    access = token(key, iss=COGNITO_ISSUER, client_id="app1", username="ana")
    assert (await c.publish("p", "/default/a", [1], {"Authorization": access}))["type"] == "data"
    assert (await c.recv())["type"] == "publish_success"
    refused = [
        token(key, iss=ISSUER, aud="mobile"),  # client id does not match
        token(key, iss=COGNITO_ISSUER, client_id="app2"),
        token(key, iss=ISSUER, aud="web-app", exp=int(time.time()) - 10),  # expired
        token(
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            iss=ISSUER,
            aud="web-app",
        ),  # wrong key
        "not-a-jwt",  # would be AWS_LAMBDA, which is not configured
    ]
    for n, bad in enumerate(refused):
        reply = await c.subscribe(f"b{n}", "/default/a", {"Authorization": bad})
        assert reply["errors"][0]["errorType"] == "UnauthorizedException", n
    await c.close()
    denied = await EventsClient.connect(
        gw.port, {"host": host, "Authorization": refused[0]}, init=False
    )
    assert (await denied.recv())["type"] == "connection_error"


def signed_headers(
    host: str, body: bytes, service: str = "appsync", region: str = "us-east-1"
) -> dict[str, str]:
    """Sign the virtual POST https://{host}/event request as the AppSync docs describe (§3.4)."""
    request = AWSRequest(
        method="POST",
        url=f"https://{host}/event",
        data=body,
        headers={
            "accept": "application/json, text/javascript",
            "content-encoding": "amz-1.0",
            "content-type": "application/json; charset=UTF-8",
        },
    )
    SigV4Auth(Credentials(AKID, SECRET), service, region).add_auth(request)
    return {"host": host, **dict(request.headers.items())}


async def test_aws_iam_websocket_and_http(start_gateway: StartGateway) -> None:
    api = events_api(
        auth_providers=[
            {
                "type": "AWS_IAM",
                "credentials": [{"access_key_id": AKID, "secret_access_key": SECRET}],
            }
        ]
    )
    gw = await start_gateway({"apis": [api]})
    host = f"127.0.0.1:{gw.port}"
    c = await EventsClient.connect(gw.port, signed_headers(host, b"{}"))
    channel = "default/iam"
    sub_auth = signed_headers(
        host, json.dumps({"channel": channel}, separators=(",", ":")).encode()
    )
    assert (await c.subscribe("s", channel, sub_auth))["type"] == "subscribe_success"
    events = [json.dumps({"msg": "<hi> & é"})]
    body = json.dumps(
        {"channel": channel, "events": events}, separators=(",", ":"), ensure_ascii=False
    ).encode()
    await c.send(
        {
            "type": "publish",
            "id": "p",
            "channel": channel,
            "events": events,
            "authorization": signed_headers(host, body),
        }
    )
    data = await c.recv()
    assert data["type"] == "data" and json.loads(data["event"]) == {"msg": "<hi> & é"}
    assert (await c.recv())["type"] == "publish_success"
    # A signature over another body is refused.
    await c.send(
        {
            "type": "publish",
            "id": "q",
            "channel": channel,
            "events": ['"x"'],
            "authorization": signed_headers(host, body),
        }
    )
    assert (await c.recv())["errors"][0]["errorType"] == "UnauthorizedException"
    # HTTP publish: the real request is signed.
    http_body = json.dumps({"channel": "/default/iam", "events": ['"over http"']}).encode()
    request = AWSRequest(
        method="POST",
        url=f"http://{host}/event",
        data=http_body,
        headers={"content-type": "application/json"},
    )
    SigV4Auth(Credentials(AKID, SECRET), "appsync", "us-east-1").add_auth(request)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"http://{host}/event", data=http_body, headers=dict(request.headers.items())
        ) as resp:
            assert resp.status == 200, await resp.text()
        assert (await c.recv())["event"] == '"over http"'
        wrong = dict(request.headers.items())
        async with http.post(f"http://{host}/event", data=http_body + b" ", headers=wrong) as resp:
            assert resp.status == 401
    await c.close()


async def test_aws_iam_scope_is_appsync_in_the_apis_region(start_gateway: StartGateway) -> None:
    # Issue 13 item 4: SigV4 for AWS_IAM must be scoped to service appsync and the API's region
    # (appsync spec §3.4); a correct signature for another scope is refused.
    api = events_api(
        region="eu-west-1",
        auth_providers=[
            {
                "type": "AWS_IAM",
                "credentials": [{"access_key_id": AKID, "secret_access_key": SECRET}],
            }
        ],
    )
    gw = await start_gateway({"apis": [api]})
    host = f"127.0.0.1:{gw.port}"
    for service, region in (("appsync", "us-east-1"), ("execute-api", "eu-west-1")):
        denied = await EventsClient.connect(
            gw.port, signed_headers(host, b"{}", service, region), init=False
        )
        assert (await denied.recv())["type"] == "connection_error", (service, region)
    c = await EventsClient.connect(gw.port, signed_headers(host, b"{}", region="eu-west-1"))
    channel = "default/iam"
    body = json.dumps({"channel": channel}, separators=(",", ":")).encode()
    for n, (service, region) in enumerate(
        (("lambda", "eu-west-1"), ("s3", "eu-west-1"), ("appsync", "us-east-1"))
    ):
        reply = await c.subscribe(f"x{n}", channel, signed_headers(host, body, service, region))
        assert reply["errors"][0]["errorType"] == "UnauthorizedException", (service, region)
    ok = await c.subscribe("s", channel, signed_headers(host, body, region="eu-west-1"))
    assert ok["type"] == "subscribe_success"
    await c.close()


async def test_jwks_from_a_url(start_gateway: StartGateway, tmp_path: Path) -> None:
    from aiohttp import web

    key, jwks = keypair(tmp_path)
    served = 0

    async def keys(_: web.Request) -> web.Response:
        nonlocal served
        served += 1
        return web.Response(text=jwks.read_text(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", keys)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        api = events_api(
            auth_providers=[{"type": "OPENID_CONNECT", "issuer": ISSUER, "jwks_url": url}]
        )
        gw = await start_gateway({"apis": [api]})
        oidc = token(key, iss=ISSUER, aud="any")
        c = await EventsClient.connect(gw.port, {"host": "h", "Authorization": oidc})
        assert (await c.subscribe("a", "/default/a", {"Authorization": oidc}))[
            "type"
        ] == "subscribe_success"
        assert (await c.subscribe("b", "/default/b", {"Authorization": oidc}))[
            "type"
        ] == "subscribe_success"
        assert served == 1  # cached
        await c.close()
    finally:
        await runner.cleanup()
