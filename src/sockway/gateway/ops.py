"""Operations endpoints: ``/health`` (alive), ``/ready`` (accepting), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from sockway.observability.metrics import Metrics

RESERVED_PATHS = frozenset({"health", "ready", "metrics"})


def add_ops_routes(
    app: web.Application,
    metrics: Metrics,
    is_ready: Callable[[], bool],
    describe: Callable[[], dict[str, Any]] = dict,
) -> None:
    """``/health`` names the process that answered (``pid``; ``describe`` adds the broker node
    id and the broker's state), so an operator behind a load balancer or ``--workers N`` sees
    which worker or machine served a request."""
    pid = os.getpid()

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "pid": pid, **describe()})

    async def ready(_: web.Request) -> web.Response:
        if is_ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    async def render(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", render)
