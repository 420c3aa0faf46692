"""Build this process's broker from the settings (issue 6).

No ``broker`` section: the embedded ``MemoryBroker`` (a cluster of one, today's behaviour).
A ``broker`` section: the Redis broker, imported only then, so a gateway without Redis never
imports redis-py.
"""

from __future__ import annotations

from sockway.brokers.base import Broker
from sockway.brokers.memory import MemoryBroker
from sockway.brokers.settings import BrokerSettings


def build_broker(b: BrokerSettings | None) -> Broker:
    """The broker the gateway's node uses (``Settings.broker``); the caller starts and closes
    it."""
    if b is None:
        return MemoryBroker()
    from sockway.brokers.redis import RedisBroker  # redis-py only when configured

    return RedisBroker(
        b.url,
        key_prefix=b.key_prefix,
        heartbeat_s=b.heartbeat_s,
        node_ttl_s=b.node_ttl_s,
        unsubscribe_grace_s=b.unsubscribe_grace_s,
        sentinel_master=b.sentinel_master,
    )
