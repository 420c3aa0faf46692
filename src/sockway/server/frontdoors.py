"""The registry of API types: settings class → builder of its front door."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sockway.server.events_api import build_events_api
from sockway.server.frontdoor import FrontDoor, GatewayContext
from sockway.server.pusher import build_pusher_app
from sockway.server.websocket_api import build_websocket_api

# One entry per API type (``type:`` in the configuration).
BUILDERS: dict[str, Callable[[Any, GatewayContext], FrontDoor]] = {
    "websocket": build_websocket_api,
    "pusher": build_pusher_app,
    "events": build_events_api,
}


def build_front_door(api: Any, ctx: GatewayContext) -> FrontDoor:
    return BUILDERS[api.type](api, ctx)
