"""The ``type: events`` front door: AppSync Events HTTP publish and realtime WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from sockway.events.auth import EventsAuth
from sockway.events.operations import Handler, NamespaceHandlers
from sockway.events.publish_http import PublishEndpoint
from sockway.events.realtime import RealtimeEndpoint
from sockway.events.runtime import EventsRuntime
from sockway.events.settings import EventsApi, HandlerSpec, LambdaAuthProvider
from sockway.events.wire import EventsError
from sockway.frontdoor.contract import Endpoint, GatewayContext, ListenInfo
from sockway.runtimes.base import Integration
from sockway.runtimes.factory import FunctionSpec
from sockway.runtimes.settings import FunctionSettings
from sockway.transport.handler import until_closed
from sockway.transport.sniffer import UpgradeHandler


class EventsFrontDoor:
    def __init__(self, runtime: EventsRuntime) -> None:
        self.runtime = runtime
        self.realtime = RealtimeEndpoint(runtime)
        self.http = PublishEndpoint(runtime)

    @property
    def name(self) -> str:
        return self.runtime.name

    def add_routes(self, app: web.Application) -> None:
        base = self.runtime.settings.base_path
        app.router.add_get(f"{base}/event/realtime", self.realtime.handle)
        app.router.add_route("OPTIONS", f"{base}/event", self.http.preflight)
        app.router.add_route("*", f"{base}/event", self.http.publish)

    def bind(self, listen: ListenInfo) -> Endpoint:
        api = self.runtime.settings
        self.runtime.domain_name = api.domain_name
        base = api.base_path
        plain = f"{listen.public_host}:{listen.plain_port}"
        urls = [("HTTP publish", f"http://{plain}{base}/event")]
        urls.append(("Realtime", f"ws://{plain}{base}/event/realtime"))
        if listen.tls_port:
            secure = f"{listen.public_host}:{listen.tls_port}"
            urls.append(("HTTPS publish", f"https://{secure}{base}/event"))
            urls.append(("Realtime TLS", f"wss://{secure}{base}/event/realtime"))
        return Endpoint(api.name, tuple(urls))

    def sweep(self, now_ms: int) -> None:
        self.realtime.sweep(now_ms)

    async def publish_text(self, channel: str, data: str, event: str | None) -> int:
        """``Operable``: deliver one event (JSON text) to the channel's subscribers on every
        node. An operator's publish: no auth mode and no onPublish handler run."""
        rt = self.runtime
        try:
            path = rt.channel(channel, subscribe=False)
            texts = rt.check_events([data])
        except EventsError as exc:
            raise ValueError(exc.message) from None
        # The other nodes first: a BrokerUnavailable then means nobody got it (docs/brokers.md).
        await rt.peers.publish(path, texts)
        return rt.fan_out(path, texts)

    def connection_details(self, connection_id: str) -> dict[str, Any]:
        conn = self.runtime.node.get(self.runtime.name, connection_id)
        session = self.realtime.sessions.get(conn) if conn is not None else None
        if session is None:
            return {}
        return {
            "subscriptions": sorted(
                f"{sub_id} {sub.channel.path}" for sub_id, sub in session.subscriptions.items()
            )
        }

    def drain(self) -> None:
        self.runtime.draining = True

    def upgrades(self) -> Mapping[str, UpgradeHandler]:
        # A new connection's realtime upgrade is served by picows (transport/picows_ws.py).
        return {f"{self.runtime.settings.base_path}/event/realtime": self.realtime.upgrade}

    def pending_work(self) -> set[asyncio.Future[Any]]:
        runtime = self.runtime
        closed = asyncio.get_running_loop().create_task(until_closed(lambda: runtime.open_count))
        return {*runtime.sessions, *runtime.inflight, closed}


def build_events_api(api: EventsApi, ctx: GatewayContext) -> EventsFrontDoor:
    def integration(
        ref: str, label: str, function: FunctionSettings, timeout_s: float, asynchronous: bool
    ) -> Integration:
        # EVENT handlers are invoked asynchronously on AWS Lambda too (spec §6.3).
        invocation_type = "Event" if asynchronous else "RequestResponse"
        return ctx.integrations.build(
            FunctionSpec(
                ref=ref,
                function_name=function.function_name or f"{api.name}-{label}",
                code_dir=function.code_dir or api.code_dir,
                region=api.region,
                account_id=api.account_id,
                memory_mb=function.memory_mb or api.memory_mb,
                environment=function.merged_environment(api.environment),
                runtime=function.runtime or api.runtime,
                timeout_s=timeout_s,
                reserved_concurrency=function.reserved_concurrency,
                http=api.http,
                aws_lambda=api.lambda_.model_copy(update={"invocation_type": invocation_type}),
            )
        )

    def handler(spec: HandlerSpec | None, label: str) -> Handler | None:
        if spec is None:
            return None
        timeout = spec.timeout_s or api.limits.handler_timeout_s
        built = integration(spec.handler, label, spec, timeout, spec.invoke_type == "EVENT")
        return Handler(built, spec, timeout)

    def code_handler(code: str, name: str, operation: str) -> Handler | None:
        """An APPSYNC_JS operation (spec §6.2) in Node.js workers; none when the file never
        names it (then events pass unchanged / subscriptions are allowed, as on AWS)."""
        path = (api.code_dir or Path.cwd()) / code
        if operation not in path.read_text(errors="replace"):
            return None
        spec = HandlerSpec(handler=code, runtime="nodejs")
        timeout = api.limits.handler_timeout_s
        function = FunctionSpec(
            ref=code,
            function_name=f"{api.name}-{name}-{operation}",
            code_dir=api.code_dir,
            region=api.region,
            account_id=api.account_id,
            memory_mb=api.memory_mb,
            environment=api.environment,
            runtime="nodejs",
            timeout_s=timeout,
        )
        built = ctx.integrations.build_node(function, f"appsync:{operation}")
        return Handler(built, spec, timeout)

    handlers = {
        name: NamespaceHandlers(
            on_publish=handler(ns.on_publish, f"{name}-onPublish"),
            on_subscribe=handler(ns.on_subscribe, f"{name}-onSubscribe"),
        )
        if ns.code is None
        else NamespaceHandlers(
            on_publish=code_handler(ns.code, name, "onPublish"),
            on_subscribe=code_handler(ns.code, name, "onSubscribe"),
        )
        for name, ns in api.namespaces.items()
    }
    authorizer = next((p for p in api.auth_providers if isinstance(p, LambdaAuthProvider)), None)
    authorizer_integration = None
    if authorizer is not None:
        timeout = authorizer.timeout_s or api.limits.handler_timeout_s
        authorizer_integration = integration(
            authorizer.handler, "authorizer", authorizer, timeout, asynchronous=False
        )
    auth = EventsAuth(api, authorizer_integration, ctx.new_id)
    runtime = EventsRuntime(
        settings=api,
        node=ctx.node,
        metrics=ctx.metrics,
        new_id=ctx.new_id,
        auth=auth,
        handlers=handlers,
        cluster=ctx.cluster,
        tap=ctx.tap,
    )
    return EventsFrontDoor(runtime)
