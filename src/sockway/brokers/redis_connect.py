"""Where this gateway's Redis is, and a client of it (the Redis broker; issue 6).

The broker's URL names a standalone Redis, the sentinels of a Sentinel deployment
(``sentinel_master``), or one node of a Redis Cluster. On a Cluster every sockway key carries
one hash tag, so one primary holds them all: ``RedisLocator.connect`` asks for that slot's
primary and connects there, and remembers every cluster node it saw as a way in for when the
URL's node is down (``brokers/redis.py`` documents the deployments).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from sockway.brokers.redis_share import Cmd

SOCKET_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 0.5
# Errors meaning "this connection/server is not usable": end the session and reconnect.
# On a Cluster, MOVED/ASK/CLUSTERDOWN/TRYAGAIN mean the slot of our keys changed hands or is
# unavailable for now: a new session finds its owner again.
DOWN = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    NoScriptError,
    MovedError,
    AskError,
    ClusterDownError,
    TryAgainError,
    MasterDownError,
    OSError,
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _address(client: Redis) -> tuple[str, int]:
    kwargs = client.connection_pool.connection_kwargs
    return str(kwargs.get("host")), int(kwargs.get("port", 6379))


async def execute(client: Redis, cmd: Cmd) -> Any:
    return await client.execute_command(*cmd)  # type: ignore[no-untyped-call]


class RedisLocator:
    """Finds the Redis that holds this gateway's keys; ``slot_key`` is one of those keys."""

    def __init__(self, url: str, sentinel_master: str | None, slot_key: str) -> None:
        self.url, self.sentinel_master, self.slot_key = url, sentinel_master, slot_key
        self._cluster_nodes: set[tuple[str, int]] = set()  # Redis Cluster nodes seen (host, port)

    def _client(self) -> Redis:
        opts: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 0),
        }
        if self.sentinel_master is None:
            return Redis.from_url(self.url, **opts)
        rest = self.url.split("://", 1)[-1]
        auth, _, rest = rest.rpartition("@")
        hosts, _, db = rest.partition("/")
        user, _, password = auth.partition(":") if auth else ("", "", "")
        sentinels = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in hosts.split(",")]
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            sentinels,
            sentinel_kwargs=dict(opts),
            username=user or None,
            password=password or None,
            db=int(db or 0),
            **opts,
        )
        return sentinel.master_for(self.sentinel_master)  # type: ignore[no-any-return]

    async def _slot_owner(self, client: Redis) -> tuple[str, int] | None:
        """On a Redis Cluster, the primary that holds this gateway's slot (all its keys share
        one hash tag); None on a standalone Redis or when ``client`` is that primary. Every
        cluster node listed is remembered as a way in for later sessions."""
        info = await client.info("cluster")
        if not info.get("cluster_enabled"):
            return None
        slot = int(await execute(client, ("CLUSTER", "KEYSLOT", self.slot_key)))
        here = _address(client)
        owner: tuple[str, int] | None = None
        for start, end, *servers in await execute(client, ("CLUSTER", "SLOTS")):
            addresses = [(_text(srv[0]) or here[0], int(srv[1])) for srv in servers]
            self._cluster_nodes.update(addresses)
            if int(start) <= slot <= int(end):
                owner = addresses[0]  # the primary comes first
        if owner is None:
            raise ClusterDownError(f"no primary serves slot {slot} of the sockway keys")
        return None if owner == here else owner

    def _client_at(self, template: Redis, address: tuple[str, int]) -> Redis:
        pool = template.connection_pool
        kwargs = {**pool.connection_kwargs, "host": address[0], "port": address[1]}
        return Redis(
            connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )

    async def connect(self) -> Redis:
        """A client of the Redis that holds this gateway's keys: the URL's (or Sentinel's
        master), or on a Cluster the primary of the keys' slot. Pub/sub is cluster-wide on a
        Cluster, so the one primary also carries every publication and subscription. When the
        URL's node is down, the cluster nodes learned before are tried in turn."""
        client = self._client()
        ways_in = [client] + [
            self._client_at(client, a)
            for a in sorted(self._cluster_nodes)
            if a != _address(client) and self.sentinel_master is None
        ]
        failure: BaseException | None = None
        for way_in in ways_in:
            try:
                owner = await self._slot_owner(way_in)
            except DOWN as exc:
                failure = failure or exc
                await way_in.aclose()
                continue
            except BaseException:
                for other in ways_in:
                    await other.aclose()
                raise
            for other in ways_in:
                if other is not way_in:
                    await other.aclose()
            if owner is None:
                return way_in
            await way_in.aclose()
            return self._client_at(way_in, owner)
        assert failure is not None
        raise failure
