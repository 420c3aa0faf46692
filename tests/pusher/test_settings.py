"""``type: pusher`` settings: defaults, key-path errors, uniqueness (pusher spec §5.4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sockway.gateway.config import ConfigError, parse_config
from sockway.pusher.settings import PusherApp, WebhookSpec
from sockway.pusher.webhooks import matches


def app(**extra: Any) -> dict[str, Any]:
    return {"name": "p", "type": "pusher", "app_id": "1", "key": "k", "secret": "s", **extra}


def problems(raw: dict[str, Any], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, tmp_path)
    return info.value.problems


def test_defaults(tmp_path: Path) -> None:
    (settings,) = parse_config({"apis": [app(app_id=123)]}, tmp_path).apis
    assert isinstance(settings, PusherApp)
    assert settings.app_id == "123"  # YAML numbers are accepted
    assert settings.enable_client_messages is False
    assert settings.max_client_events_per_sec == 10
    assert settings.max_event_payload_in_kb == 10
    assert settings.max_presence_members_per_channel == 100
    assert settings.max_channel_name_length == 200
    assert settings.activity_timeout_s == 120
    assert settings.auth_timestamp_window_s == 600
    assert settings.webhook_delivery.retry_window_s == 300
    assert "secret=" not in repr(settings)  # never logged


def test_errors_have_key_paths(tmp_path: Path) -> None:
    raw = {
        "apis": [
            app(
                app_id="app-id",
                max_connections=-2,
                webhooks=[{"event_types": ["channel_occupied"]}],
            ),
            app(
                name="q",
                key="k",
                webhooks=[
                    {"url": "http://x", "event_types": ["nope"], "headers": {"X-Pusher-Key": "x"}}
                ],
            ),
        ]
    }
    lines = problems(raw, tmp_path)
    assert any(line.startswith("apis[0].app_id: String should match pattern") for line in lines)
    assert any(line.startswith("apis[0].max_connections:") for line in lines)
    assert (
        "apis[0].webhooks[0]: a webhook needs exactly one of 'url', 'lambda_function' or 'handler'"
        in lines
    )
    assert any(line.startswith("apis[1].webhooks[0].event_types[0]:") for line in lines)
    assert any(
        "X-Pusher-Key" in line and line.startswith("apis[1].webhooks[0].headers") for line in lines
    )
    assert "apis[1].key: app 'p' already uses key 'k'" in lines
    assert "apis[1].app_id: app 'a' already uses app_id '1'" in problems(
        {"apis": [app(name="a", key="a"), app(name="b", key="b")]}, tmp_path
    )


def test_pusher_app_next_to_a_websocket_api(tmp_path: Path) -> None:
    settings = parse_config({"apis": [{"name": "w", "type": "websocket"}, app()]}, tmp_path)
    assert [a.type for a in settings.apis] == ["websocket", "pusher"]


def test_lambda_webhook_settings(tmp_path: Path) -> None:
    (settings,) = parse_config(
        {
            "apis": [
                app(
                    webhooks=[
                        {
                            "lambda_function": "f",
                            "event_types": ["member_added"],
                            "lambda": {"async": True, "region": "eu-west-1"},
                        }
                    ]
                )
            ]
        },
        tmp_path,
    ).apis
    assert isinstance(settings, PusherApp)
    hook = settings.webhooks[0]
    assert hook.lambda_ is not None and hook.lambda_.async_ is True
    assert hook.lambda_region == "eu-west-1"


def test_filter_matching() -> None:
    spec = WebhookSpec.model_validate(
        {
            "url": "http://x",
            "event_types": ["channel_occupied"],
            "filter": {"channel_name_starts_with": "beta-", "channel_name_ends_with": "-app"},
        }
    )
    assert matches(spec, {"name": "channel_occupied", "channel": "beta-my-app"})
    assert not matches(spec, {"name": "channel_occupied", "channel": "beta-x"})
    assert not matches(spec, {"name": "channel_occupied", "channel": "alpha-app"})
    assert not matches(spec, {"name": "channel_vacated", "channel": "beta-my-app"})
