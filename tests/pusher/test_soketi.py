"""Reading soketi configurations (``sockway.pusher.soketi``, issue 17): plain asserts."""

from __future__ import annotations

import json
from pathlib import Path

from sockway.gateway.config import parse_config
from sockway.pusher.soketi import soketi_options, soketi_settings

FIXTURE = Path(__file__).parents[1] / "e2e" / "fixtures" / "soketi.json"


def test_the_fixture_file_as_it_is(tmp_path: Path) -> None:
    result = soketi_settings(json.loads(FIXTURE.read_text()), {})
    assert result.problems == []
    assert "metrics: not used (Prometheus metrics are served at /metrics on the main port)" in (
        result.notes
    )
    settings = parse_config(result.document, tmp_path)
    assert settings.listen == "0.0.0.0:6001"
    assert settings.shutdown_grace_s == 2
    assert settings.broker is None
    (app,) = settings.apis
    assert app.type == "pusher"
    assert (app.app_id, app.key, app.secret) == ("app-id", "app-key", "app-secret")
    assert app.max_connections == 100 and app.enable_client_messages
    assert app.max_client_events_per_sec == -1  # soketi's unlimited, not sockway's 10
    assert app.max_presence_members_per_channel == 50  # the server-wide presence option
    assert app.max_event_payload_in_kb == 50 and app.max_event_batch_size == 10
    assert app.max_http_request_mb == 1
    assert app.activity_timeout_s == 30
    assert (app.channel_info_counts, app.webhook_client_event_data) == ("always", "object")
    assert app.webhook_delivery.batch_window_ms == 200
    (hook,) = app.webhooks
    assert hook.url == "http://127.0.0.1:3000/pusher/webhooks"
    assert hook.headers == {"X-Forwarded-By": "soketi"}  # X-Pusher-Key ignored, as soketi
    assert hook.filter.channel_name_starts_with == "private-"


def test_environment_wins_and_json_values_are_parsed(tmp_path: Path) -> None:
    env = {
        "SOKETI_PORT": "7001",
        "SOKETI_HOST": "127.0.0.1",
        "SOKETI_DEFAULT_APP_ID": "42",
        "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "false",
        "SOKETI_DEFAULT_APP_WEBHOOKS": json.dumps(
            [{"url": "http://h/w", "event_types": ["member_added"]}]
        ),
        "SOKETI_USER_AUTHENTICATION_TIMEOUT": "5000",
        "SOKETI_EVENT_MAX_SIZE_IN_KB": "20",
    }
    result = soketi_settings(json.loads(FIXTURE.read_text()), env)
    settings = parse_config(result.document, tmp_path)
    assert settings.listen == "127.0.0.1:7001"
    (app,) = settings.apis
    assert app.app_id == "42" and not app.enable_client_messages
    assert [h.url for h in app.webhooks] == ["http://h/w"]
    assert app.user_authentication_timeout_s == 5 and app.max_event_payload_in_kb == 20


def test_defaults_alone_are_soketis_default_app(tmp_path: Path) -> None:
    settings = parse_config(soketi_settings({}, {}).document, tmp_path)
    (app,) = settings.apis
    assert (app.app_id, app.key, app.secret) == ("app-id", "app-key", "app-secret")
    assert settings.listen == "0.0.0.0:6001"
    assert app.max_event_payload_in_kb == 100 and app.max_http_request_mb == 100


def test_nested_objects_merge_into_the_defaults() -> None:
    options = soketi_options({"appManager": {"array": {"apps": [{"id": "1"}]}}}, {})
    assert options["appManager"]["driver"] == "array"
    assert options["appManager"]["array"]["apps"] == [{"id": "1"}]


def test_redis_adapter_becomes_the_broker(tmp_path: Path) -> None:
    doc = {
        "adapter.driver": "redis",
        "adapter.redis.prefix": "tenant-a",
        "database.redis": {"host": "10.0.0.5", "port": 6380, "db": 2, "password": "pw"},
    }
    settings = parse_config(soketi_settings(doc, {}).document, tmp_path)
    assert settings.broker is not None
    assert settings.broker.url == "redis://:pw@10.0.0.5:6380/2"
    assert settings.broker.key_prefix == "tenant-a"


def test_what_would_change_clients_is_refused() -> None:
    doc = {"pathPrefix": "/ws", "appManager.driver": "mysql", "adapter.driver": "nats"}
    problems = soketi_settings(doc, {}).problems
    assert [p.split(":")[0] for p in problems] == [
        "adapter.driver",
        "pathPrefix",
        "appManager.driver",
    ]


def test_app_spellings_and_unknown_keys() -> None:
    doc = {
        "appManager.array.apps": [
            {"AppId": 7, "AppKey": "k", "AppSecret": "s", "max_connections": "3", "colour": "red"}
        ]
    }
    result = soketi_settings(doc, {})
    (api,) = result.document["apis"]
    assert (api["app_id"], api["key"], api["max_connections"]) == ("7", "k", 3)
    assert "appManager.array.apps[0].colour: not a soketi app setting; ignored" in result.notes
