"""Mode recognition and API keys with expiry (appsync-events spec §3.1, §3.2)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jwt
import pytest

from sockway.events.auth import CONNECT, AuthRequest, EventsAuth
from sockway.events.settings import EventsApi
from sockway.events.wire import EventsError

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp()


def api(tmp_path: Path) -> EventsApi:
    return EventsApi.model_validate(
        {
            "name": "e",
            "type": "events",
            "auth_providers": [
                {
                    "type": "API_KEY",
                    "keys": [
                        "da2-forever",
                        {"key": "da2-old", "expires": "2026-01-01T00:00:00Z"},
                        {"key": "da2-naive", "expires": "2027-01-01T00:00:00"},
                    ],
                },
                {
                    "type": "OPENID_CONNECT",
                    "issuer": "https://idp",
                    "jwks_file": str(tmp_path / "j.json"),
                },
                {
                    "type": "AMAZON_COGNITO_USER_POOLS",
                    "user_pool_id": "eu-west-1_X",
                    "aws_region": "eu-west-1",
                    "jwks_file": str(tmp_path / "j.json"),
                },
            ],
            "namespaces": {"default": None},
        }
    )


def auth(tmp_path: Path) -> EventsAuth:
    return EventsAuth(api(tmp_path), None, lambda: "id", wall_clock=lambda: NOW)


def test_mode_recognition(tmp_path: Path) -> None:
    a = auth(tmp_path)
    oidc = jwt.encode({"iss": "https://idp"}, "k" * 32, algorithm="HS256")
    cognito = jwt.encode(
        {"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_X"},
        "k" * 32,
        algorithm="HS256",
    )
    other = jwt.encode({"iss": "https://elsewhere"}, "k" * 32, algorithm="HS256")
    assert a.infer_mode({"x-api-key": "k", "authorization": "x"}) == "API_KEY"
    assert a.infer_mode({"authorization": "AWS4-HMAC-SHA256 Credential=..."}) == "AWS_IAM"
    assert a.infer_mode({"authorization": oidc}) == "OPENID_CONNECT"
    assert a.infer_mode({"authorization": f"Bearer {cognito}"}) == "AMAZON_COGNITO_USER_POOLS"
    assert a.infer_mode({"authorization": other}) == "AWS_LAMBDA"
    assert a.infer_mode({"authorization": "opaque"}) == "AWS_LAMBDA"
    assert a.infer_mode({"host": "h"}) is None


@pytest.mark.parametrize(
    ("key", "ok"),
    [("da2-forever", True), ("da2-naive", True), ("da2-old", False), ("da2-unknown", False)],
)
async def test_api_keys_and_expiry(tmp_path: Path, key: str, ok: bool) -> None:
    request = AuthRequest(CONNECT, None, {"x-api-key": key}, b"{}", "127.0.0.1")
    if ok:
        assert await auth(tmp_path).authorize(request, ["API_KEY"]) is None
    else:
        with pytest.raises(EventsError) as info:
            await auth(tmp_path).authorize(request, ["API_KEY"])
        assert info.value.error_type == "UnauthorizedException"


async def test_a_mode_not_allowed_for_the_operation_is_refused(tmp_path: Path) -> None:
    request = AuthRequest(CONNECT, None, {"x-api-key": "da2-forever"}, b"{}", "127.0.0.1")
    with pytest.raises(EventsError):
        await auth(tmp_path).authorize(request, ["OPENID_CONNECT"])
