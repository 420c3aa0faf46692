"""Several AppSync Events gateways in one test process, one cluster (issue 6).

``events_cluster(tmp_path, n)`` starts ``n`` real gateways, each on its own ephemeral port with
the same events API config, whose ``MemoryBroker``s share one ``MemoryBus``: they behave as
``n`` nodes (the memory broker implements the same contract as the Redis one, see
``tests/brokers``); ``broker=`` builds another broker per node (e.g. a ``RedisBroker`` with a
test's own key prefix) to run the same scenarios on it. ``OutageBroker`` is a memory broker whose outage a test switches on, to see
what the gateway does when the broker reports itself unavailable (the broker contract's failure
behaviour: ``available`` False, awaited operations raise ``BrokerUnavailable``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from sockway.brokers.base import Broker, BrokerUnavailable
from sockway.brokers.memory import MemoryBroker, MemoryBus
from sockway.brokers.redis import RedisBroker
from sockway.gateway.config import parse_config
from sockway.gateway.gateway import Gateway
from tests.e2e.appsync_support import API_KEY, EventsClient, events_api

GRACE_S = 0.2  # unsubscribe grace period of the test brokers (default 2 s)


class OutageBroker(MemoryBroker):
    """A memory broker with an outage switch: ``down`` makes it unavailable; ``fail_publish``
    makes ``publish`` raise while it still claims to be available (a connection lost mid-way);
    ``hold_back`` delays one subscription's confirmation until the test sets ``go``."""

    down = False
    fail_publish = False
    hold_back: str | None = None  # a key whose confirmation waits for ``go`` (a slow SUBSCRIBE)
    go: asyncio.Event
    waiting = False

    @property
    def available(self) -> bool:
        return not self.down

    async def subscribed(self, key: str, timeout: float) -> None:
        if key == self.hold_back:
            self.waiting = True
            await self.go.wait()
        await super().subscribed(key, timeout)

    async def publish(
        self, topic: str, payload: bytes, exclude: str | None = None, *, strict: bool = True
    ) -> None:
        if self.down or self.fail_publish:
            raise BrokerUnavailable("broker unreachable (test outage)")
        await super().publish(topic, payload, exclude, strict=strict)


@dataclass
class EventsCluster:
    bus: MemoryBus
    gateways: list[Gateway] = field(default_factory=list)
    brokers: list[Broker] = field(default_factory=list)
    clients: list[EventsClient] = field(default_factory=list)
    api: str = "ev"

    def port(self, node: int) -> int:
        return self.gateways[node].port

    async def connect(self, node: int) -> EventsClient:
        client = await EventsClient.connect(self.port(node))
        self.clients.append(client)
        return client

    async def http_publish(
        self, node: int, channel: str, events: list[Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """POST ``/event`` on ``node``: (status, JSON body, headers)."""
        body = {"channel": channel, "events": [orjson.dumps(e).decode() for e in events]}
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{self.port(node)}/event",
                json=body,
                headers={"x-api-key": API_KEY},
            ) as resp,
        ):
            return resp.status, await resp.json(), dict(resp.headers)

    def outage(self, node: int) -> OutageBroker:
        broker = self.brokers[node]
        assert isinstance(broker, OutageBroker)
        return broker

    def keys(self, node: int) -> set[str]:
        """The broker keys ``node`` is subscribed to (memory and Redis brokers)."""
        broker = self.brokers[node]
        assert isinstance(broker, MemoryBroker | RedisBroker)
        return set(broker.subscriptions)

    def metric(self, node: int, name: str, **labels: str) -> float:
        value = self.gateways[node].metrics.registry.get_sample_value(
            name, {"api": self.api, **labels}
        )
        return value or 0.0


@contextlib.asynccontextmanager
async def events_cluster(
    tmp_path: Path,
    n: int = 3,
    api: dict[str, Any] | None = None,
    broker: Callable[[], Broker] | None = None,
    **extra: Any,
) -> AsyncIterator[EventsCluster]:
    """``extra``: more top-level settings of every node (e.g. ``tls``)."""
    bus = MemoryBus()
    cluster = EventsCluster(bus)
    config = api if api is not None else events_api()
    try:
        for i in range(n):
            settings = parse_config(
                {
                    "listen": "127.0.0.1:0",
                    "state_dir": str(tmp_path / f"state{i}"),
                    "apis": [config],
                    **extra,
                },
                tmp_path,
            )
            node_broker = broker() if broker is not None else OutageBroker(bus, grace_s=GRACE_S)
            gateway = Gateway(settings, broker=node_broker)
            await gateway.start()
            cluster.brokers.append(node_broker)
            cluster.gateways.append(gateway)
        yield cluster
    finally:
        for client in cluster.clients:
            with contextlib.suppress(Exception):
                await client.close()
        for gateway in cluster.gateways:
            await gateway.stop(grace_s=5)
