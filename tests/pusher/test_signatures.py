"""Signatures against the spec's test vectors (pusher spec §2, §3.1) and the real py SDK."""

from __future__ import annotations

import hashlib
import json

import pusher
import pytest

from sockway.pusher.signatures import (
    RequestAuthError,
    channel_auth_ok,
    hmac_hex,
    user_auth_ok,
    verify_request,
    webhook_signature,
)

KEY, SECRET, SOCKET = "app-key", "app-secret", "1234.5678"


def test_private_vector():
    auth = "app-key:d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d"
    assert channel_auth_ok(
        auth, key=KEY, secret=SECRET, socket_id=SOCKET, channel="private-foo", channel_data=None
    )
    assert not channel_auth_ok(
        auth, key=KEY, secret=SECRET, socket_id="1.2", channel="private-foo", channel_data=None
    )
    assert not channel_auth_ok(
        auth, key=KEY, secret=SECRET, socket_id=SOCKET, channel="private-bar", channel_data=None
    )


@pytest.mark.parametrize(
    ("channel_data", "signature"),
    [
        (
            '{"user_id": "1", "user_info": {"name": "A"}}',
            "22c207ead8a06eb9548ae9898342f266ccb6339f7a3b2eeae536c3a1f30c541f",
        ),
        (
            '{"user_id":"1","user_info":{"name":"A"}}',
            "e91fda49b9bb647f53dc8f7244984f021805e2fa943d08d7b020bc77e5e5dc22",
        ),
    ],
)
def test_presence_vectors_sign_the_exact_string(channel_data, signature):
    auth = f"app-key:{signature}"
    assert channel_auth_ok(
        auth,
        key=KEY,
        secret=SECRET,
        socket_id=SOCKET,
        channel="presence-foo",
        channel_data=channel_data,
    )
    reserialised = json.dumps(
        json.loads(channel_data), separators=(", ", ": ") if " " not in channel_data else (",", ":")
    )
    assert not channel_auth_ok(
        auth,
        key=KEY,
        secret=SECRET,
        socket_id=SOCKET,
        channel="presence-foo",
        channel_data=reserialised,
    )


@pytest.mark.parametrize(
    ("user_data", "signature"),
    [
        (
            '{"id": "1", "name": "A"}',
            "1894a04113ad3d7783561dea7b58dc6bde732ca192669780190f6a78dcd91ee9",
        ),
        (
            '{"id":"1","name":"A"}',
            "fa30cf11293a2886ef5228925ddfb69e8d16d69d26068eaa970327f0f341b873",
        ),
    ],
)
def test_user_vectors(user_data, signature):
    assert user_auth_ok(
        f"app-key:{signature}", key=KEY, secret=SECRET, socket_id=SOCKET, user_data=user_data
    )
    assert not user_auth_ok(
        f"other:{signature}", key=KEY, secret=SECRET, socket_id=SOCKET, user_data=user_data
    )


def test_sdk_auth_round_trip():
    client = pusher.Pusher(app_id="1", key=KEY, secret=SECRET)
    got = client.authenticate("presence-x", SOCKET, {"user_id": 5, "user_info": {"a": 1}})
    assert channel_auth_ok(
        got["auth"],
        key=KEY,
        secret=SECRET,
        socket_id=SOCKET,
        channel="presence-x",
        channel_data=got["channel_data"],
    )


BODY = b'{"name": "my-event", "channels": ["my-channel"], "data": "{\\"message\\": \\"hi\\"}"}'
WORKED = {
    "auth_key": KEY,
    "auth_timestamp": "1700000000",
    "auth_version": "1.0",
    "body_md5": "a17a207ebedb276b2ac9741bb6ad6c86",
    "auth_signature": "23bbf0dbb19ca214fa9ffeb4582be62afd26746b01ab8645c49ca535cde51492",
}


def _verify(params, body=BODY, now=1700000000, path="/apps/123/events", method="POST"):
    verify_request(
        method=method,
        path=path,
        params=list(params.items()),
        body=body,
        key=KEY,
        secret=SECRET,
        now_s=now,
        window_s=600,
    )


def test_worked_example_of_the_spec():
    assert hashlib.md5(BODY).hexdigest() == WORKED["body_md5"]
    _verify(WORKED)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"auth_signature": "0" * 64}, "Invalid signature"),
        ({"auth_key": "other"}, "Unknown auth_key"),
        ({"body_md5": "0" * 32}, "body_md5"),
        ({"auth_timestamp": "not-a-number"}, "not a number"),
        ({"auth_timestamp": "nan"}, "not a number"),
    ],
)
def test_rejections(change, message):
    with pytest.raises(RequestAuthError, match=message):
        _verify({**WORKED, **change})


@pytest.mark.parametrize(
    "timestamp",
    [
        "nan",
        "NaN",
        "-nan",
        "inf",
        "-inf",
        "Infinity",
        "1700000000.0",
        "1.7e9",
        "1_700_000_000",
        "+1700000000",
        "-1700000000",
        " 1700000000",
        "",
        "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",
        "1" * 16,
    ],
)
def test_non_integer_timestamps_are_rejected(timestamp):
    # Issue 13 item 6: float("nan") passed the window check (NaN compares false), forever.
    # The signature is made over the bad value, so only the timestamp check can refuse it.
    params = {k: v for k, v in WORKED.items() if k != "auth_signature"}
    params["auth_timestamp"] = timestamp
    to_sign = "\n".join(
        ["POST", "/apps/123/events", "&".join(f"{k}={params[k]}" for k in sorted(params))]
    )
    params["auth_signature"] = hmac_hex(SECRET, to_sign)
    with pytest.raises(RequestAuthError, match="auth_timestamp"):
        _verify(params)


def test_timestamp_window_is_600_s_either_way():
    _verify(WORKED, now=1700000000 + 600)
    for now in (1700000000 + 601, 1700000000 - 601):
        with pytest.raises(RequestAuthError, match="Timestamp expired"):
            _verify(WORKED, now=now)


def test_missing_parameters_and_unsigned_body():
    for name in ("auth_key", "auth_timestamp", "auth_version", "auth_signature"):
        with pytest.raises(RequestAuthError, match=name):
            _verify({k: v for k, v in WORKED.items() if k != name})
    with pytest.raises(RequestAuthError, match="Missing body_md5"):
        _verify({k: v for k, v in WORKED.items() if k != "body_md5"})


def test_path_and_method_are_signed():
    with pytest.raises(RequestAuthError):
        _verify(WORKED, path="/apps/124/events")
    with pytest.raises(RequestAuthError):
        _verify(WORKED, method="PUT")


def test_webhook_signature_is_what_the_sdk_validates():
    client = pusher.Pusher(app_id="1", key=KEY, secret=SECRET)
    import time

    body = json.dumps({"time_ms": int(time.time() * 1000), "events": []}).encode()
    assert client.validate_webhook(KEY, webhook_signature(SECRET, body), body.decode()) is not None
