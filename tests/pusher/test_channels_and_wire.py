"""Channel kinds and names (pusher spec §1.5) and frame shapes (§1.2-§1.3)."""

from __future__ import annotations

import json

import pytest

from sockway.pusher import wire
from sockway.pusher.channels import (
    Kind,
    allows_client_events,
    is_cache,
    kind_of,
    server_to_user_id,
    valid_name,
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("news", Kind.PUBLIC),
        ("private-x", Kind.PRIVATE),
        ("private-encrypted-x", Kind.ENCRYPTED),
        ("presence-x", Kind.PRESENCE),
        ("#server-to-user-7", Kind.SERVER_TO_USER),
        ("my-private-x", Kind.PUBLIC),  # anchored, unlike soketi's regex
        ("cache-presence-x", Kind.PUBLIC),
    ],
)
def test_kinds(name, kind):
    assert kind_of(name) is kind


def test_cache_prefixes():
    for name in ("cache-a", "private-cache-a", "private-encrypted-cache-a", "presence-cache-a"):
        assert is_cache(name)
    assert not is_cache("public-cache-a")


def test_names():
    assert valid_name("a-Z_0=@,.;", 200)
    assert valid_name("#server-to-user-1", 200)
    assert not valid_name("a b", 200)
    assert not valid_name("a" * 201, 200)
    assert not valid_name("", 200)


def test_client_events_only_on_private_and_presence():
    assert allows_client_events(Kind.PRIVATE) and allows_client_events(Kind.PRESENCE)
    for kind in (Kind.PUBLIC, Kind.ENCRYPTED, Kind.SERVER_TO_USER):
        assert not allows_client_events(kind)
    assert server_to_user_id("#server-to-user-abc") == "abc"
    assert server_to_user_id("news") is None


def test_connection_established_data_is_a_json_string():
    frame = json.loads(wire.connection_established("1.2", 120))
    assert frame["event"] == "pusher:connection_established"
    assert json.loads(frame["data"]) == {"socket_id": "1.2", "activity_timeout": 120}


def test_presence_succeeded_payload():
    frame = json.loads(wire.presence_succeeded("presence-a", ["1", 2], {"1": {"n": 1}, "2": None}))
    assert json.loads(frame["data"]) == {
        "presence": {"ids": ["1", 2], "hash": {"1": {"n": 1}, "2": None}, "count": 2}
    }


def test_subscription_error_shapes():
    err = wire.SubscriptionError(None, "bad", 4009)
    assert json.loads(wire.subscription_error("c", err)) == {
        "event": "pusher:subscription_error",
        "channel": "c",
        "data": {"error": "bad", "status": 4009},
    }


def test_parse():
    msg = wire.parse('{"event":"pusher:subscribe","data":"{\\"channel\\":\\"a\\"}"}')
    assert msg.data == {"channel": "a"}  # data as a JSON string is accepted too
    client = wire.parse('{"event":"client-x","channel":"private-a","data":"raw"}')
    assert client.data == "raw" and client.channel == "private-a"
    for bad in ("nope", "[]", '{"data": 1}'):
        with pytest.raises(wire.ProtocolError):
            wire.parse(bad)
