"""Several in-process gateways forming one cluster for the Pusher tests (issue 6).

``pusher_nodes(tmp_path, n, **app)`` starts ``n`` gateways serving the same Pusher app on one
``MemoryBus`` (each its own ``MemoryBroker``: one node each), and stops them afterwards. With
``SOCKWAY_TEST_REDIS=redis://...`` set, the tests that need no memory-broker hook run on that
Redis instead (``sockway.brokers.redis.RedisBroker``, a fresh key prefix per cluster).
``OutageBroker`` is a memory broker whose connection can be cut: while ``down`` it behaves as
the contract says of an unreachable broker (``available`` is False, awaited operations raise
``BrokerUnavailable`` at once, fire-and-forget ones are kept); the same outage on a real Redis
is exercised with real processes in ``test_redis_cluster.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from sockway.brokers.base import Broker, BrokerUnavailable, Transition
from sockway.brokers.memory import MemoryBroker, MemoryBus
from sockway.frontdoor.cluster import topic
from sockway.gateway.config import parse_config
from sockway.gateway.gateway import Gateway
from sockway.pusher.cluster import CACHE
from sockway.pusher.settings import WEBHOOK_EVENT_TYPES
from tests.e2e.pusher_support import Client, pusher_app, sdk

ALL_HOOKS = list(WEBHOOK_EVENT_TYPES)
FAST_HOOKS = {"initial_backoff_s": 0.05, "max_backoff_s": 0.2, "retry_window_s": 3}


class OutageBroker(MemoryBroker):
    """A memory broker whose link to the bus can be cut (see the module docstring)."""

    down = False

    @property
    def available(self) -> bool:
        return not self.down

    def _check(self) -> None:
        if self.down:
            raise BrokerUnavailable("connection to the broker lost (test outage)")

    async def subscribed(self, key: str, timeout: float) -> None:
        self._check()
        await super().subscribed(key, timeout)

    async def publish(
        self, topic: str, payload: bytes, exclude: str | None = None, *, strict: bool = True
    ) -> None:
        self._check()
        await super().publish(topic, payload, exclude, strict=strict)

    async def set_count(self, scope: str, channel: str, count: int) -> Transition | None:
        self._check()
        return await super().set_count(scope, channel, count)

    async def count(self, scope: str, channel: str) -> int:
        self._check()
        return await super().count(scope, channel)

    async def channels(self, scope: str, prefix: str = "") -> dict[str, int]:
        self._check()
        return await super().channels(scope, prefix)

    async def presence_join(
        self, scope: str, channel: str, user_key: str, member: bytes
    ) -> Transition | None:
        self._check()
        return await super().presence_join(scope, channel, user_key, member)

    async def presence_leave(self, scope: str, channel: str, user_key: str) -> Transition | None:
        self._check()
        return await super().presence_leave(scope, channel, user_key)

    async def presence_members(self, scope: str, channel: str) -> dict[str, bytes]:
        self._check()
        return await super().presence_members(scope, channel)


def _brokers(memory: type[MemoryBroker] | None) -> Callable[[MemoryBus], Broker]:
    url = os.environ.get("SOCKWAY_TEST_REDIS")
    if memory is None and url:
        redis = importlib.import_module("sockway.brokers.redis")
        prefix = f"test-pusher-{uuid.uuid4().hex[:12]}"

        def on_redis(_: MemoryBus) -> Broker:
            broker: Broker = redis.RedisBroker(url, key_prefix=prefix, unsubscribe_grace_s=0.05)
            return broker

        return on_redis
    kind = memory or MemoryBroker
    return lambda bus: kind(bus, grace_s=0.05)


@contextlib.asynccontextmanager
async def pusher_nodes(
    tmp_path: Path,
    n: int,
    *,
    webhook_url: str | None = None,
    broker: type[MemoryBroker] | None = None,
    **app: Any,
) -> AsyncIterator[list[Gateway]]:
    """``n`` gateways serving one Pusher app as one cluster (webhooks: every type to
    ``webhook_url``, from every node). ``broker`` forces a memory broker class."""
    if webhook_url is not None:
        app.setdefault("webhooks", [{"url": webhook_url, "event_types": ALL_HOOKS}])
        app.setdefault("webhook_delivery", FAST_HOOKS)
    new_broker = _brokers(broker)
    bus = MemoryBus()
    gateways: list[Gateway] = []
    try:
        for i in range(n):
            config = {
                "listen": "127.0.0.1:0",
                "state_dir": str(tmp_path / f"state{i}"),
                "apis": [pusher_app(**app)],
            }
            gateway = Gateway(parse_config(config, tmp_path), broker=new_broker(bus))
            await gateway.start()
            gateways.append(gateway)
        for gateway in gateways:  # every node keeps cache-channel events from now on
            assert await gateway.cluster.ready(topic("p", CACHE + "*"))
        yield gateways
    finally:
        for gateway in gateways:
            await gateway.stop(grace_s=5)


async def presence(
    gateway: Gateway, user_id: Any, user_info: Any = None, channel: str = "presence-room"
) -> tuple[Client, dict[str, Any]]:
    """A socket on ``gateway`` subscribed to a presence channel as ``user_id``; the answer."""
    client = await Client.connect(gateway)
    member: dict[str, Any] = {"user_id": user_id}
    if user_info is not None:
        member["user_info"] = user_info
    answer = await client.subscribe(
        channel, sdk(gateway).authenticate(channel, client.socket_id, member)
    )
    return client, answer


async def signed_in(gateway: Gateway, user_id: str) -> Client:
    client = await Client.connect(gateway)
    auth = sdk(gateway).authenticate_user(client.socket_id, {"id": user_id})
    await client.send("pusher:signin", auth)
    await client.expect("pusher:signin_success")
    return client
