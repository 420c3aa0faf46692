"""``http_proxy`` routes in sockway's own configuration (websocket/settings.py, README
"HTTP_PROXY integrations"): what is accepted, what is refused with its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sockway.gateway.config import ConfigError, parse_config
from sockway.websocket.settings import WebSocketApi


def _api(routes: dict[str, Any]) -> dict[str, Any]:
    return {"apis": [{"name": "game", "type": "websocket", "routes": routes}]}


def _problem(routes: dict[str, Any], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(_api(routes), tmp_path)
    return "\n".join(info.value.problems)


def test_an_http_proxy_route_is_accepted(tmp_path: Path) -> None:
    settings = parse_config(
        _api(
            {
                "$connect": {
                    "handler": "http://127.0.0.1:9/connect",
                    "http_proxy": {
                        "request_parameters": {
                            "integration.request.header.token": "route.request.header.Auth"
                        }
                    },
                },
                "move": {
                    "handler": "https://backend.example/moves",
                    "route_response": True,
                    "timeout_s": 5,
                    "http_proxy": {
                        "method": "put",
                        "request_parameters": {
                            "integration.request.header.connectionId": "context.connectionId"
                        },
                    },
                },
            }
        ),
        tmp_path,
    )
    (api,) = settings.apis
    assert isinstance(api, WebSocketApi)
    move = api.routes["move"]
    assert move.http_proxy is not None and move.http_proxy.method == "PUT"
    connect = api.routes["$connect"].http_proxy
    assert connect is not None and connect.method == "POST"  # IntegrationMethod's default


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            {"handler": "lambda:fn", "http_proxy": {}},
            "http_proxy needs an http:// or https:// handler URL",
        ),
        (
            {"handler": "http://h/x", "http_proxy": {}, "runtime": "process"},
            "runtime: not used by an http_proxy route",
        ),
        (
            {"handler": "http://h/x", "http_proxy": {"method": "FETCH"}},
            "apis[0].routes.move.http_proxy.method",
        ),
        (
            {
                "handler": "http://h/x",
                "http_proxy": {"request_parameters": {"integration.request.header.a": "nope"}},
            },
            "integration.request.header.a: 'nope' is not a mapping expression",
        ),
        (
            {
                "handler": "http://h/x",
                "http_proxy": {
                    "request_parameters": {
                        "integration.request.querystring.t": "route.request.querystring.t"
                    }
                },
            },
            "routes.move.http_proxy.request_parameters: route.request.querystring.t: route "
            "request headers and query strings can be mapped only on $connect",
        ),
    ],
)
def test_ill_formed_http_proxy_routes_are_refused(
    route: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    assert expected in _problem({"move": route}, tmp_path)
