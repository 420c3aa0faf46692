"""``type: events`` settings: defaults, short forms, key-path errors (appsync-events spec §3.1, §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sockway.events.settings import EventsApi
from sockway.gateway.config import ConfigError, parse_config

KEYS = [{"type": "API_KEY", "keys": ["da2-k"]}]


def events(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "e",
        "type": "events",
        "auth_providers": KEYS,
        "namespaces": {"default": None},
        **overrides,
    }


def problems_of(doc: dict[str, Any], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, tmp_path)
    return info.value.problems


def test_defaults_are_appsync_quotas(tmp_path: Path) -> None:
    api = parse_config({"apis": [events()]}, tmp_path).apis[0]
    assert isinstance(api, EventsApi)
    limits = api.limits
    assert (
        limits.max_event_bytes,
        limits.max_events_per_publish,
        limits.max_subscriptions_per_connection,
    ) == (240 * 1024, 5, 200)
    assert (
        limits.max_connection_duration_s,
        limits.connection_timeout_ms,
        limits.keep_alive_interval_s,
    ) == (86400, 300000, 60)
    assert api.connect_modes() == ["API_KEY"] and api.publish_modes("default") == ["API_KEY"]
    assert len(api.effective_api_id) == 26


def test_namespace_modes_override_api_defaults(tmp_path: Path) -> None:
    doc = events(
        auth_providers=[
            *KEYS,
            {"type": "AWS_IAM", "credentials": [{"access_key_id": "A", "secret_access_key": "S"}]},
        ],
        connection_auth_modes=["AWS_IAM"],
        default_publish_auth_modes=["API_KEY"],
        namespaces={"default": None, "admin": {"publish_auth_modes": ["AWS_IAM"]}},
    )
    api = parse_config({"apis": [doc]}, tmp_path).apis[0]
    assert isinstance(api, EventsApi)
    assert api.connect_modes() == ["AWS_IAM"]
    assert api.publish_modes("default") == ["API_KEY"] and api.publish_modes("admin") == ["AWS_IAM"]
    assert api.subscribe_modes("admin") == ["API_KEY", "AWS_IAM"]  # no default: any provider


def test_errors_name_their_key_path(tmp_path: Path) -> None:
    doc = events(
        auth_providers=[
            {"type": "API_KEY", "keys": [{"key": "k", "expires": "soon"}]},
            {"type": "OPENID_CONNECT", "issuer": "x"},
        ],
        namespaces={"default": {"on_publish": "missing_mod.handler"}, "bad_ns": None},
        limits={"max_event_bytes": 0, "bogus": 1},
    )
    problems = problems_of({"apis": [doc]}, tmp_path)
    assert any(p.startswith("apis[0].auth_providers[0].keys[0].expires: ") for p in problems)
    assert "apis[0].auth_providers[1]: give exactly one of jwks_file and jwks_url" in problems
    assert any("namespace 'bad_ns'" in p for p in problems)
    assert "apis[0].limits.bogus: unknown key" in problems
    assert "apis[0].namespaces.default.on_publish: module 'missing_mod' not found" in problems


def test_unknown_auth_type_and_unlisted_mode(tmp_path: Path) -> None:
    assert problems_of({"apis": [events(auth_providers=[{"type": "NOPE"}])]}, tmp_path) == [
        "apis[0].auth_providers[0].type: unknown type 'NOPE' (expected one of: API_KEY, AWS_LAMBDA, OPENID_CONNECT, AMAZON_COGNITO_USER_POOLS, AWS_IAM)"
    ]
    doc = events(namespaces={"d": {"subscribe_auth_modes": ["AWS_IAM"]}})
    assert problems_of({"apis": [doc]}, tmp_path) == [
        "apis[0]: namespaces.d.subscribe_auth_modes: AWS_IAM is not listed in auth_providers"
    ]


def test_two_events_apis_need_distinct_base_paths(tmp_path: Path) -> None:
    assert problems_of({"apis": [events(), events(name="f")]}, tmp_path) == [
        "apis[1].base_path: APIs 'e' and 'f' both serve /event; give each events API its own base_path"
    ]
    settings = parse_config({"apis": [events(), events(name="f", base_path="/f")]}, tmp_path)
    assert len(settings.apis) == 2
    ws = {"name": "w", "type": "websocket", "stage": "event"}
    assert "both serve /event" in problems_of({"apis": [events(), ws]}, tmp_path)[0]


def test_jwks_file_is_relative_to_the_config(tmp_path: Path) -> None:
    doc = events(
        auth_providers=[
            {"type": "OPENID_CONNECT", "issuer": "https://i", "jwks_file": "keys/jwks.json"}
        ]
    )
    api = parse_config({"apis": [doc]}, tmp_path).apis[0]
    assert isinstance(api, EventsApi)
    assert api.auth_providers[0].jwks_file == (tmp_path / "keys/jwks.json").resolve()  # type: ignore[union-attr]
