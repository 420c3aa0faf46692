"""AppSync Events across the nodes of one gateway (issue 6; appsync-events spec §4).

Each node delivers a publication to its own subscribers (``EventsRuntime.fan_out``) and sends it
once to the other nodes through the broker, as the final event texts (after the onPublish
handler ran on the publishing node) JSON-encoded once: ``["<event json>", ...]``.

Broker keys: a node holds one key per distinct local subscription key while it has
subscribers of it — ``"<api>|/ns/a/b"`` for an exact subscription, ``"<api>|/ns/a/*"`` for a
wildcard one. A broker pattern ``"<prefix>*"`` is a plain prefix match (Redis ``PSUBSCRIBE``
on the glob-escaped prefix), so ``"<api>|/ns/a/*"`` matches ``/ns/a/b`` and ``/ns/a/b/c`` but
not ``/ns/a`` itself: exactly the wildcard semantics of spec §4. The broker delivers a
publication once per matching key, and the receiving node hands it to the subscriptions of
that key only (``SubscriptionIndex.members_of``); a node with both ``/ns/a/b`` and ``/ns/*``
subscribers therefore delivers to each subscription once, the same result as a local fan-out.

Ordering: a publication's broker send is awaited while the publishing node still holds the
channel's turn (``ChannelSequencer``), and the broker delivers the sends of one node to one topic
in order, so the publications of one node to one channel reach every other node in the order
the publishing node delivered them locally. Publications of *different* nodes to one channel
are not ordered with respect to each other.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

import orjson

from sockway.brokers.base import BrokerUnavailable, Change
from sockway.core.channels import ChannelPath, SubscriptionIndex
from sockway.frontdoor.cluster import SEP, Cluster, OutageLog, topic
from sockway.observability.metrics import Metrics

log = logging.getLogger("sockway.appsync")

S = TypeVar("S")


Deliver = Callable[[list[S], list[str]], int]


class EventsClusterMember(Generic[S]):
    """The ``ClusterMember`` of one events API: broker keys of its subscriptions, publications
    to and from the other nodes."""

    def __init__(
        self,
        cluster: Cluster,
        api: str,
        index: SubscriptionIndex[S],
        deliver: Deliver[S],
        metrics: Metrics,
    ) -> None:
        self.cluster = cluster
        self.api = api
        self.index = index
        self.deliver = deliver
        self.metrics = metrics
        self._outages = OutageLog()
        cluster.members[api] = self

    @property
    def available(self) -> bool:
        return self.cluster.available

    # -- broker keys ----------------------------------------------------------------------

    def key(self, channel: ChannelPath) -> str:
        """``"<api>|/ns/a/b"`` or, for a wildcard subscription, the pattern ``"<api>|/ns/a/*"``."""
        return topic(self.api, channel.path)

    def add(self, channel: ChannelPath, sub: S) -> None:
        if self.index.add(channel, sub):
            self.cluster.hold(self.key(channel))

    def remove(self, channel: ChannelPath, sub: S) -> None:
        if self.index.remove(channel, sub):
            self.cluster.release(self.key(channel))

    def subscribing(self, channel: ChannelPath) -> contextlib.AbstractAsyncContextManager[bool]:
        """``Cluster.subscribing`` for this channel's key: add the subscription inside the
        block, so no event reaches it before ``subscribe_success``."""
        return self.cluster.subscribing(self.key(channel))

    # -- publications ---------------------------------------------------------------------

    async def publish(self, channel: ChannelPath, texts: list[str], strict: bool = True) -> None:
        """Send the final events of one publication to the other nodes; raises
        ``BrokerUnavailable`` (counted, logged at most every ``OUTAGE_LOG_INTERVAL_S``) when
        the broker cannot take it — at once when it is known to be down."""
        try:
            if not self.cluster.available:
                raise BrokerUnavailable("the broker is unavailable")
            await self.cluster.publish(self.api, channel.path, orjson.dumps(texts), strict=strict)
        except BrokerUnavailable as exc:
            self.failed(channel, exc)
            raise
        self.metrics.cluster_publications.labels(self.api, "out").inc()

    def failed(self, channel: ChannelPath, exc: Exception) -> None:
        """Count a publication the other nodes did not get; log the outage, not every one."""
        self.metrics.cluster_publish_failures.labels(self.api).inc()
        count = self._outages.due()
        if count is not None:
            log.warning(
                "%d publication(s) (latest to %s) not sent to the other nodes: %s",
                count,
                channel.path,
                exc,
                extra={"api": self.api},
            )

    def on_publication(self, key: str, rest: str, payload: bytes, exclude: str | None) -> bool:
        """A publication to channel ``rest`` of another node that matched our ``key``."""
        self.metrics.cluster_publications.labels(self.api, "in").inc()
        subs = self.index.members_of(key.partition(SEP)[2])
        if not subs:
            return True  # the last subscriber left during the unsubscribe grace period
        try:
            texts = orjson.loads(payload)
        except orjson.JSONDecodeError:
            texts = None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            log.error("dropped a malformed publication to %s from another node", rest)
            return True
        try:
            self.deliver(subs, texts)
        except Exception:  # our bug: must not break the broker's delivery loop
            log.exception("delivering a publication to %s from another node failed", rest)
        return True

    def on_change(self, change: Change) -> None:
        """AppSync Events has no occupancy webhooks: nothing to do."""
