"""The real AWS Amplify JS ``events`` client (npm ``aws-amplify``) against sockway over ``wss://``.

Amplify always opens ``wss://`` (spec §1.2), so the gateway serves TLS with ``certificate:
auto`` on the main port and Node trusts the development CA through ``NODE_EXTRA_CA_CERTS``.
Each auth mode Amplify offers is driven: ``apiKey``, ``lambda`` (authToken), ``userPool`` (a
Cognito access token from Amplify's token provider) and ``iam`` (Amplify signs with SigV4).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import StartGateway, write_handlers
from tests.e2e.appsync_support import API_KEY, EventsClient, events_api

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "js" / "amplify_events.mjs"
POOL = "us-east-1_Amplify"
AKID, SECRET = "AKIDAMPLIFYTEST", "amplify/secret/key"
AUTHORIZER = """
def handler(event, context):
    return {"isAuthorized": event["authorizationToken"] == "let-me-in", "handlerContext": {"who": "amplify"}}
"""


def jwks_and_token(tmp_path: Path) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="RS256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    now = int(time.time())
    claims = {
        "iss": f"https://cognito-idp.us-east-1.amazonaws.com/{POOL}",
        "client_id": "amplifyapp",
        "token_use": "access",
        "sub": "user-1",
        "username": "ana",
        "iat": now,
        "exp": now + 600,
    }
    return path, jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


async def run_amplify(options: dict[str, Any], ca_file: Path) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is required (make install)"
    assert (ROOT / "node_modules" / "aws-amplify").is_dir(), "run npm install (make install)"
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        json.dumps(options),
        cwd=ROOT,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(ca_file)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 0, err.decode() + out.decode()
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["apiKey", "lambda", "userPool", "iam"])
async def test_amplify_subscribes_and_publishes_over_wss_and_https(
    start_gateway: StartGateway, tmp_path: Path, mode: str
) -> None:
    jwks, access_token = jwks_and_token(tmp_path)
    code = write_handlers(tmp_path / "fns", {"amplify_authz.py": AUTHORIZER})
    api = events_api(
        code,
        auth_providers=[
            {"type": "API_KEY", "keys": [API_KEY]},
            {"type": "AWS_LAMBDA", "handler": "amplify_authz.handler"},
            {
                "type": "AMAZON_COGNITO_USER_POOLS",
                "user_pool_id": POOL,
                "app_id_client_regex": "amplifyapp",
                "jwks_file": str(jwks),
            },
            {
                "type": "AWS_IAM",
                "credentials": [{"access_key_id": AKID, "secret_access_key": SECRET}],
            },
        ],
    )
    gw = await start_gateway({"tls": {"certificate": "auto"}, "apis": [api]})
    assert gw.tls is not None and gw.tls.ca_file is not None
    # A raw subscriber too: Amplify's publishes reach other clients.
    raw = await EventsClient.connect(gw.port)
    assert (await raw.subscribe("raw", "/default/*"))["type"] == "subscribe_success"
    options = {
        "endpoint": f"https://localhost:{gw.port}/event",
        "channel": "/default/amplify",
        "authMode": mode,
        "apiKey": API_KEY,
        "authToken": "let-me-in" if mode == "lambda" else None,
        "accessToken": access_token if mode == "userPool" else None,
        "accessKeyId": AKID if mode == "iam" else None,
        "secretAccessKey": SECRET,
    }
    result = await run_amplify(options, gw.tls.ca_file)
    sent = [{"via": "websocket", "n": 1, "text": "<b> & é"}, {"via": "http", "n": 2}]
    assert result["received"] == sent
    assert result["publishHttp"] is None  # Amplify returns undefined when nothing failed
    assert result["badError"] == (
        "Connection failed: BadRequestException: Channel namespace 'nowhere' not found"
    )
    # A refused events.post names the reason, not "Unknown error" (spec §1.4).
    assert result["postRefused"] == "BadRequestException: Channel namespace 'nowhere' not found"
    assert result["postDenied"] == (
        "UnauthorizedException: You are not authorized to make this call."
    )
    assert [json.loads((await raw.recv())["event"]) for _ in range(2)] == sent
    await raw.close()


async def test_amplify_with_a_wrong_key_is_refused(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"tls": {"certificate": "auto"}, "apis": [events_api()]})
    assert gw.tls is not None and gw.tls.ca_file is not None
    node = shutil.which("node")
    assert node is not None
    options = {
        "endpoint": f"https://localhost:{gw.port}/event",
        "channel": "/default/a",
        "authMode": "apiKey",
        "apiKey": "da2-wrong",
    }
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        json.dumps(options),
        cwd=ROOT,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(gw.tls.ca_file)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 1
    assert "UnauthorizedException" in err.decode()
