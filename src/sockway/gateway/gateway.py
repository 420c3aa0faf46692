"""Assemble and run a gateway from ``Settings``: node, APIs, HTTP app, listeners, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from sockway.brokers.base import Broker
from sockway.brokers.factory import build_broker
from sockway.console.server import ApiView, Console
from sockway.core.ids import Clock, IdGenerator, SystemClock, aws_style_id
from sockway.core.node import GOING_AWAY_CLOSE, Node
from sockway.frontdoor.cluster import Cluster
from sockway.frontdoor.contract import Endpoint, FrontDoor, GatewayContext, ListenInfo
from sockway.gateway.config import ConfigError, has_inprocess_handlers
from sockway.gateway.lambda_api import LocalFunctions
from sockway.gateway.ops import add_ops_routes
from sockway.gateway.registry import build_front_door, unmatched_handler
from sockway.gateway.settings import Settings, parse_hostport
from sockway.observability.access_log import ACCESS_LOGGER, AccessLog
from sockway.observability.logging import quiet_peer_request_errors
from sockway.observability.metrics import Metrics
from sockway.observability.tap import Tap
from sockway.runtimes.base import Integration
from sockway.runtimes.environment import UPSTREAM_CA_BUNDLE, apply_handler_environment
from sockway.runtimes.factory import FunctionSpec, IntegrationFactory
from sockway.runtimes.node_sdk import NodeNotFound
from sockway.runtimes.settings import DEFAULT_RUNTIME
from sockway.transport.listener import Listener, bind_socket, listen_on
from sockway.transport.tls import TlsMaterial, auto_certificate, ca_bundle

log = logging.getLogger("sockway")

SWEEP_INTERVAL_S = 1.0


class Gateway:
    """One gateway process. ``start()`` binds and serves; ``stop()`` drains and exits cleanly."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        new_id: IdGenerator | None = None,
        reload: bool = False,
        broker: Broker | None = None,
        reuse_port: bool = False,
        listen_socket: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        # SO_REUSEPORT on the listeners: a worker of ``sockway serve --workers N``.
        self.reuse_port = reuse_port
        # Bound already to ``settings.listen`` (``listener.reserve_port``): the main listener
        # listens on it instead of binding again, so a port chosen earlier is never given up.
        if listen_socket is not None:
            port = parse_hostport(settings.listen)[1]
            if port not in (0, listen_socket.getsockname()[1]):
                raise ValueError(f"listen_socket is not bound to {settings.listen}")
        self._listen_socket = listen_socket
        self.integrations = IntegrationFactory(
            ThreadPoolExecutor(settings.handler_threads, thread_name_prefix="handler"),
            reload=reload,  # --reload: restart process-runtime workers when their code changes
            nodejs=settings.nodejs,
            state_dir=settings.state_dir,
        )
        self.clock = clock or SystemClock()
        self.new_id = new_id or aws_style_id
        self.node = Node(self.clock)
        # Settings without ``broker``: a cluster of one on the embedded memory broker.
        self.cluster = Cluster(broker or build_broker(settings.broker), self.node)
        self.metrics = Metrics()
        # What the front doors report: the access log listens; the console, when served.
        self.tap = Tap()
        # Not even subscribed when its logger is off (log_level above INFO): no cost then.
        if settings.access_log.enabled and logging.getLogger(ACCESS_LOGGER).isEnabledFor(
            logging.INFO
        ):
            self.tap.subscribe(AccessLog(settings.access_log.format))
        self.executor = self.integrations.executor
        self.tls: TlsMaterial | None = None
        self.front_doors: list[FrontDoor] = []
        self.local_functions: LocalFunctions | None = None
        self.listeners: list[Listener] = []
        self.endpoints: list[Endpoint] = []
        self.listen_info: ListenInfo | None = None
        self.console: Console | None = None
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._ready = False
        self._stopping = False
        self._stopped = asyncio.Event()

    # -- building -------------------------------------------------------------------------

    def _prepare_environment(self) -> None:
        """Handlers' environment (see ``runtimes.environment``); also applied by the config
        loader before it imports handlers. Here the development CA bundle file is written."""
        bundle = None
        if self.tls is not None and self.tls.ca_file is not None:
            # boto3 in handlers verifies https://{domainName}/{stage} against the local CA; the
            # bundle also holds the public CAs, so calls to real AWS endpoints keep verifying.
            bundle = ca_bundle(
                self.tls.ca_file,
                os.environ.get(UPSTREAM_CA_BUNDLE) or os.environ.get("AWS_CA_BUNDLE"),
            )
        region = self.settings.apis[0].region if self.settings.apis else "us-east-1"
        inprocess = [
            a.environment
            for i, a in enumerate(self.settings.apis)
            if has_inprocess_handlers(i, a.model_dump(mode="json"))
        ]
        apply_handler_environment(inprocess, region, bundle)

    def _local_functions(self) -> LocalFunctions | None:
        """The configuration's ``functions:``, served on the Lambda Invoke API."""
        if not self.settings.functions:
            return None
        served: dict[str, tuple[Integration, float]] = {}
        for name, function in self.settings.functions.items():
            timeout_s = function.timeout_s or 3.0  # Lambda's default timeout
            spec = FunctionSpec(
                ref=function.handler,
                function_name=name,
                code_dir=function.code_dir,
                region=function.region,
                account_id=function.account_id,
                memory_mb=function.memory_mb or 128,
                environment=function.environment or {},
                runtime=function.runtime or DEFAULT_RUNTIME,
                timeout_s=timeout_s,
                reserved_concurrency=function.reserved_concurrency,
            )
            served[name] = (self.integrations.build(spec), timeout_s)
        first = next(iter(self.settings.functions.values()))
        return LocalFunctions(served, self.new_id, first.region, first.account_id)

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        add_ops_routes(app, self.metrics, lambda: self._ready, self._describe)
        if self.console is not None:
            self.console.add_routes(app)
        for door in self.front_doors:
            door.add_routes(app)
        if self.local_functions is not None:
            self.local_functions.add_routes(app)

        async def forbidden(_: web.Request) -> web.Response:
            # API Gateway's answer for a path outside any stage (apigw spec §4.2).
            return web.json_response(
                {"message": "Forbidden"},
                status=403,
                headers={"x-amzn-ErrorType": "ForbiddenException"},
            )

        unmatched = unmatched_handler({api.type for api in self.settings.apis})
        app.router.add_route("*", "/{tail:.*}", unmatched or forbidden)
        return app

    def _api_views(self) -> list[ApiView]:
        ends = {e.api: e for e in self.endpoints}
        return [
            ApiView(api.name, api.type, door, ends.get(api.name))
            for api, door in zip(self.settings.apis, self.front_doors, strict=True)
        ]

    def console_url(self) -> str | None:
        """Where the live console is served, or None."""
        if self.console is None or self.listen_info is None:
            return None
        return f"http://{self.listen_info.public_host}:{self.port}{self.console.path}"

    def _describe(self) -> dict[str, str]:
        """``/health``: which node answered and whether it reaches the cluster broker. A node
        whose broker is unreachable still serves its own connections (issue 6 §4), so it stays
        ready; ``broker: unreachable`` is for dashboards and alerts."""
        return {
            "node": self.cluster.node_id,
            "broker": "connected" if self.cluster.available else "unreachable",
        }

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        quiet_peer_request_errors()  # a malformed client request is one line, not a traceback
        host, port = parse_hostport(s.listen)
        if s.tls is not None:
            if s.tls.certificate == "auto":
                self.tls = auto_certificate(s.state_dir, s.auto_tls_hosts())
            else:
                assert s.tls.key is not None
                self.tls = TlsMaterial(Path(s.tls.certificate), s.tls.key, None)
        self._prepare_environment()
        await self.cluster.start()
        try:
            ctx = GatewayContext(
                node=self.node,
                cluster=self.cluster,
                metrics=self.metrics,
                new_id=self.new_id,
                integrations=self.integrations,
                tap=self.tap,
            )
            self.front_doors = [build_front_door(api, ctx) for api in s.apis]
            if s.console.active(s.loopback_only()):
                self.console = Console(s.console, self.node, self.tap, self._api_views)
            try:  # Node.js handlers: Node.js found, the AWS SDK installed (once)
                await self.integrations.prepare()
            except NodeNotFound as exc:
                raise ConfigError([f"nodejs.node: {exc}"]) from None
            self.local_functions = self._local_functions()
            tls_ctx = self.tls.server_context() if self.tls is not None else None

            self._runner = web.AppRunner(
                self._app(), handle_signals=False, access_log=None, shutdown_timeout=2.0
            )
            await self._runner.setup()
            factory = self._runner.server
            assert factory is not None
            shared_tls = tls_ctx is not None and (s.tls is None or s.tls.listen is None)
            upgrades = {p: h for door in self.front_doors for p, h in door.upgrades().items()}
            held, self._listen_socket = self._listen_socket, None
            main = Listener(
                bind_socket(host, port, reuse_port=self.reuse_port)
                if held is None
                else listen_on(held),
                factory,
                tls_ctx if shared_tls else None,
                sniff=shared_tls,
                upgrades=upgrades,
            )
            self.listeners.append(main)
            tls_port = main.port if shared_tls else None
            if tls_ctx is not None and s.tls is not None and s.tls.listen is not None:
                thost, tport = parse_hostport(s.tls.listen)
                tls_listener = Listener(
                    bind_socket(thost, tport, reuse_port=self.reuse_port),
                    factory,
                    tls_ctx,
                    sniff=False,
                    upgrades=upgrades,
                )
                self.listeners.append(tls_listener)
                tls_port = tls_listener.port
            for listener in self.listeners:
                await listener.start()

        except BaseException:
            # Not started (e.g. the port is taken): leave the cluster instead of heartbeating
            # as a node that serves nothing.
            for listener in self.listeners:
                await listener.close()
            if self._runner is not None:
                await self._runner.cleanup()
            await self.cluster.close()
            raise
        public_host = "localhost" if host in ("0.0.0.0", "::", "") else host
        if ":" in public_host:
            public_host = f"[{public_host}]"
        self.listen_info = ListenInfo(public_host, main.port, tls_port)
        self.endpoints = [door.bind(self.listen_info) for door in self.front_doors]
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        self._ready = True

    @property
    def port(self) -> int:
        return self.listeners[0].port

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = self.node.now_ms()
            for door in self.front_doors:
                try:
                    door.sweep(now)
                except Exception:  # a bug here must not stop timeouts forever
                    log.exception("sweep failed", extra={"api": door.name})

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: not ready, stop accepting, close every connection with 1001 and let its
        ``$disconnect`` run, bounded by ``shutdown_grace_s``; then close everything."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self._ready = False
        for door in self.front_doors:
            door.drain()
        for listener in self.listeners:
            await listener.close()
        if self.console is not None:
            self.console.close()  # its live streams end, so the HTTP server can stop
        for conn in list(self.node.connections()):
            conn.sink.close(*GOING_AWAY_CLOSE)
        # Accepted messages finish their handlers and $disconnect runs, within the grace period.
        work = {t for door in self.front_doors for t in door.pending_work()}
        if self.local_functions is not None:
            work.add(asyncio.get_running_loop().create_task(self.local_functions.drain()))
        if work:
            _, pending = await asyncio.wait(work, timeout=grace)
            if pending:
                log.warning(
                    "%d handler invocations still running after the %.1f s grace period",
                    len(pending),
                    grace,
                )
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._runner is not None:
            await self._runner.cleanup()
        await self.cluster.close()
        await self.integrations.aclose()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._stopped.set()

    async def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT, then drain (``stop``)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down: draining %d connections", self.node.count())
        await self.stop()
