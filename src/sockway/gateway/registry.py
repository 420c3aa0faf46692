"""The registry of API types: what the gateway knows of each ``type:`` of the configuration.

Each front door's package provides the pieces (its builder, where a raw API keeps handler
references, its own cross-API checks); this module is the one place that names them all. A new
API type adds its settings class to ``gateway.settings.Api`` and its entry to ``API_TYPES``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sockway.events import settings as events_settings
from sockway.events.door import build_events_api
from sockway.frontdoor.contract import FrontDoor, GatewayContext
from sockway.pusher import settings as pusher_settings
from sockway.pusher.door import build_pusher_app, not_found
from sockway.websocket import settings as websocket_settings
from sockway.websocket.door import build_websocket_api

# (key path, reference, runtime, code_dir) of each handler a raw API names:
# ``(index, raw API) -> refs``.
HandlerRef = tuple[str, str, str, str | None]
HandlerRefs = Callable[[int, dict[str, Any]], list[HandlerRef]]


def _no_handlers(i: int, api: dict[str, Any]) -> list[HandlerRef]:
    return []


def _no_conflicts(raw_apis: list[dict[str, Any]]) -> list[str]:
    return []


@dataclass(frozen=True)
class ApiType:
    """One API type: how its front door is built and how its raw settings are checked."""

    build: Callable[[Any, GatewayContext], FrontDoor]
    # Where a raw API of this type keeps handler references (resolved before serving).
    handler_refs: HandlerRefs = _no_handlers
    # Conflicts between the APIs of this type, over the raw ``apis`` list: one line each.
    check_apis: Callable[[list[dict[str, Any]]], list[str]] = _no_conflicts
    # Union tags of nested settings that pydantic puts into error locations (not config keys).
    error_tags: tuple[str, ...] = ()
    # The answer to a path no route matches when every API of the gateway is of this type
    # (None: API Gateway's 403 ``Forbidden``, apigw spec §4.2).
    unmatched: Callable[[web.Request], Awaitable[web.Response]] | None = None


API_TYPES: dict[str, ApiType] = {
    "websocket": ApiType(build_websocket_api, handler_refs=websocket_settings.handler_refs),
    "pusher": ApiType(
        build_pusher_app,
        handler_refs=pusher_settings.handler_refs,
        check_apis=pusher_settings.check_unique_pusher_apps,
        unmatched=not_found,
    ),
    "events": ApiType(
        build_events_api,
        handler_refs=events_settings.handler_refs,
        error_tags=events_settings.EVENTS_AUTH_TYPES,
    ),
}


def build_front_door(api: Any, ctx: GatewayContext) -> FrontDoor:
    return API_TYPES[api.type].build(api, ctx)


def unmatched_handler(
    types: set[str],
) -> Callable[[web.Request], Awaitable[web.Response]] | None:
    """The answer to an unrouted path for a gateway serving APIs of ``types``: that type's
    own when there is one type and it has one (``ApiType.unmatched``), else None."""
    return API_TYPES[next(iter(types))].unmatched if len(types) == 1 else None
