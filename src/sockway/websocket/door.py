"""The ``type: websocket`` front door: API Gateway WebSocket API + @connections + channels."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from sockway.frontdoor.cluster import Cluster
from sockway.frontdoor.contract import Endpoint, GatewayContext, ListenInfo
from sockway.runtimes.base import Integration
from sockway.runtimes.factory import FunctionSpec
from sockway.runtimes.settings import FunctionSettings
from sockway.transport.sniffer import UpgradeHandler
from sockway.websocket.events import ApiIdentity
from sockway.websocket.handshake import Authorizer, Handshakes
from sockway.websocket.management import ManagementApi
from sockway.websocket.runtime import ApiRuntime, Route
from sockway.websocket.settings import RouteSpec, WebSocketApi


class WebSocketFrontDoor:
    def __init__(self, runtime: ApiRuntime, handshakes: Handshakes, cluster: Cluster) -> None:
        self.runtime = runtime
        self.handshakes = handshakes
        self.management = ManagementApi(runtime, cluster)

    @property
    def name(self) -> str:
        return self.runtime.name

    def add_routes(self, app: web.Application) -> None:
        stage = self.runtime.settings.stage
        app.router.add_get(f"/{stage}", self.handshakes.handle_upgrade)
        app.router.add_route("*", f"/{stage}/@connections/{{tail:.+}}", self.management.connections)
        app.router.add_route("*", f"/{stage}/@channels/{{tail:.+}}", self.management.channels)

    def upgrades(self) -> Mapping[str, UpgradeHandler]:
        # A new connection's upgrade to the stage is served by picows (transport/picows_ws.py).
        return {f"/{self.runtime.settings.stage}": self.handshakes.upgrade}

    def bind(self, listen: ListenInfo) -> Endpoint:
        api = self.runtime.settings
        domain = api.domain_name or f"{listen.public_host}:{listen.tls_port or listen.plain_port}"
        self.runtime.identity = ApiIdentity(
            api_id=api.effective_api_id,
            stage=api.stage,
            domain_name=domain,
            region=api.region,
            account_id=api.account_id,
            stage_variables=dict(api.stage_variables),
        )
        ws_url = f"ws://{listen.public_host}:{listen.plain_port}/{api.stage}"
        urls = [("WebSocket", ws_url)]
        if listen.tls_port:
            urls.append(
                ("WebSocket TLS", f"wss://{listen.public_host}:{listen.tls_port}/{api.stage}")
            )
        scheme = "https" if listen.tls_port else "http"
        urls.append(
            ("@connections", f"{scheme}://{domain}/{api.stage}/@connections/{{connectionId}}")
        )
        return Endpoint(api.name, tuple(urls), (f"npx wscat -c {ws_url}",))

    def sweep(self, now_ms: int) -> None:
        self.runtime.sweep(now_ms)

    async def publish_text(self, channel: str, data: str, event: str | None) -> int:
        """``Operable``: publish as ``POST /{stage}/@channels/{channel}`` does."""
        return await self.management.publish_text(channel, data, event)

    def connection_details(self, connection_id: str) -> dict[str, Any]:
        return {}  # channels and the authorizer context are on core.Connection

    def drain(self) -> None:
        self.runtime.draining = True

    def pending_work(self) -> set[asyncio.Future[Any]]:
        runtime = self.runtime
        drained = asyncio.get_running_loop().create_task(runtime.drained())
        return {*runtime.sessions, *runtime.inflight, drained}


def build_websocket_api(api: WebSocketApi, ctx: GatewayContext) -> WebSocketFrontDoor:
    default_timeout = api.limits.integration_timeout_s

    def integration(
        ref: str, label: str, function: FunctionSettings, timeout_s: float
    ) -> Integration:
        aws_lambda = api.lambda_
        if not isinstance(function, RouteSpec):  # the authorizer is always RequestResponse
            aws_lambda = aws_lambda.model_copy(update={"invocation_type": "RequestResponse"})
        elif function.invocation_type is not None:
            aws_lambda = aws_lambda.model_copy(update={"invocation_type": function.invocation_type})
        return ctx.integrations.build(
            FunctionSpec(
                ref=ref,
                function_name=function.function_name or f"{api.name}-{label}".replace("$", ""),
                code_dir=function.code_dir or api.code_dir,
                region=api.region,
                account_id=api.account_id,
                memory_mb=function.memory_mb or api.memory_mb,
                environment=function.merged_environment(api.environment),
                runtime=function.runtime or api.runtime,
                timeout_s=timeout_s,
                reserved_concurrency=function.reserved_concurrency,
                http=api.http,
                aws_lambda=aws_lambda,
                http_proxy=function.http_proxy if isinstance(function, RouteSpec) else None,
            )
        )

    routes = {
        key: Route(
            key,
            integration(spec.handler, key, spec, spec.timeout_s or default_timeout),
            spec.route_response,
            spec.timeout_s or default_timeout,
        )
        for key, spec in api.routes.items()
    }
    authorizer = None
    if api.authorizer is not None:
        timeout_s = api.authorizer.timeout_s or default_timeout
        authorizer = Authorizer(
            api.authorizer,
            integration(api.authorizer.handler, "authorizer", api.authorizer, timeout_s),
            timeout_s,
        )
    runtime = ApiRuntime(
        settings=api,
        node=ctx.node,
        metrics=ctx.metrics,
        new_id=ctx.new_id,
        routes=routes,
        tap=ctx.tap,
    )
    return WebSocketFrontDoor(runtime, Handshakes(runtime, authorizer), ctx.cluster)
