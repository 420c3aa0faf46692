"""The broker contract: what nodes of one gateway share (DESIGN "brokers/", issue 6).

A *node* is one gateway process. Each node owns its connections; the broker carries what must
cross nodes and keeps the little shared state that every node must answer the same:

- **Publications.** ``publish(topic, payload, exclude)`` reaches every *other* node that has
  subscribed ``topic`` — or a prefix pattern ``"<prefix>*"`` that matches it — exactly once per
  matching subscription key. The publishing node delivers to its own local subscribers itself
  (no round trip, and local traffic keeps flowing when the broker is down). Nodes subscribe a
  topic when their first local subscriber arrives (``subscribe``) and drop it a short grace
  period after the last one leaves (``unsubscribe``), so a node only receives what it needs.
- **Requests.** ``request(node_id, body)`` asks one node and awaits its answer; ``request_all``
  asks every live node (this one included) — direct sends, disconnects, connection info and
  cluster-wide listings are built on these.
- **Connection registry.** ``register``/``unregister``/``locate``: which live node holds a
  connection. A connection of a node that died is located nowhere.
- **Channel counts.** ``set_count`` records this node's subscriber count of a channel and says
  whether the channel became occupied or vacated *cluster-wide* with that change; exactly one
  node observes each transition, so a webhook fired on it fires once.
- **Presence.** ``presence_join``/``presence_leave`` keep members deduplicated by user across
  nodes; ``member_added``/``member_removed`` transitions are observed by exactly one node.
- **Liveness.** Nodes heartbeat; a node whose heartbeat expired is dead: a live node removes its
  registry entries, counts and presence and hands the resulting transitions to its own
  ``Inbox.on_orphaned`` (webhooks such as ``channel_vacated`` then fire exactly once).

Failure contract: when the broker is unreachable, every awaited operation raises
``BrokerUnavailable`` promptly (never hangs), ``available`` is False, and the broker keeps
reconnecting with backoff; once back it resubscribes and rewrites this node's share of the
shared state from ``Inbox.snapshot()``. Fire-and-forget operations (``subscribe``,
``unsubscribe``, ``register``, ``unregister``) never raise; they are re-applied by that resync.

Scopes name one API (``"<api type>:<api name>"``); topics, channels and keys are opaque strings
that contain no ``*``. ``core/`` and the front doors' wire modules never import a broker
implementation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

# How long a node keeps a broker subscription after its last local subscriber left, so a
# client that unsubscribes and resubscribes (page reload) does not churn the broker.
DEFAULT_UNSUBSCRIBE_GRACE_S = 2.0


class BrokerUnavailable(RuntimeError):
    """The broker cannot be reached right now; the operation did not happen. Retry later."""


class NodeUnreachable(BrokerUnavailable):
    """The node holding the target is alive by its heartbeat but did not answer in time."""


class Transition(enum.Enum):
    OCCUPIED = "occupied"  # the first subscriber anywhere arrived
    VACATED = "vacated"  # the last subscriber anywhere left
    MEMBER_ADDED = "member_added"  # a user's first socket anywhere joined a presence channel
    MEMBER_REMOVED = "member_removed"  # the user's last socket anywhere left


@dataclass(frozen=True, slots=True)
class Change:
    """One cluster-wide transition, e.g. found while cleaning up after a dead node."""

    transition: Transition
    scope: str
    channel: str
    user_key: str | None = None  # presence transitions only
    member: bytes | None = None  # the member document as joined (presence transitions only)


@dataclass(slots=True)
class NodeState:
    """Everything this node contributes to the shared state (rewritten after an outage)."""

    subscriptions: set[str] = field(default_factory=set)
    registered: set[str] = field(default_factory=set)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (scope, channel) → n>0
    # (scope, channel, user_key) → member document
    presence: dict[tuple[str, str, str], bytes] = field(default_factory=dict)


class Inbox(Protocol):
    """The node side of a broker: what a broker delivers to its node."""

    def on_publication(self, key: str, topic: str, payload: bytes, exclude: str | None) -> None:
        """A publication of another node; ``key`` is the subscription (topic or pattern) it
        matched, ``exclude`` a connection id that must not receive it."""

    async def on_request(self, body: bytes) -> bytes:
        """Answer a request of another node (or of this node, through ``request_all``)."""

    def on_orphaned(self, changes: list[Change]) -> None:
        """Transitions caused by removing a dead node's share (fire their webhooks once)."""

    def snapshot(self) -> NodeState:
        """This node's current share, for the resync after a broker outage."""


class Broker(Protocol):
    node_id: str

    @property
    def available(self) -> bool:
        """False while the broker connection is down (cluster operations would raise)."""

    async def start(self, inbox: Inbox) -> None: ...

    async def close(self) -> None:
        """Leave the cluster cleanly: this node's share is removed (its transitions are
        returned to nobody: the node drained its connections first)."""

    # -- publications ------------------------------------------------------------------------

    def subscribe(self, key: str) -> None:
        """Receive publications to topic ``key`` (or matching pattern ``"<prefix>*"``)."""

    def unsubscribe(self, key: str) -> None:
        """Stop receiving them, after the grace period unless subscribed again meanwhile."""

    async def subscribed(self, key: str, timeout: float) -> None:
        """Return once the broker confirmed ``subscribe(key)``: from then on, publications of
        other nodes reach this node (a client is told "subscribed" only after this). Raises
        ``BrokerUnavailable`` when the broker is down or does not confirm within ``timeout``."""

    async def publish(
        self, topic: str, payload: bytes, exclude: str | None = None, *, strict: bool = True
    ) -> None:
        """To every other node subscribed (module docstring). ``strict`` (publish APIs, whose
        2xx promises it): raise ``BrokerUnavailable`` and publish nothing when a node that is
        up has not confirmed its subscriptions yet; not strict (best effort: WebSocket-origin
        traffic, member events): publish to every node that can take it."""

    async def publish_many(
        self, items: list[tuple[str, bytes, str | None]], *, strict: bool = True
    ) -> None:
        """``publish`` of several ``(topic, payload, exclude)`` as one: all or none (one API
        request that publishes to several channels answers 503 only if none went out)."""

    # -- requests ----------------------------------------------------------------------------

    async def request(self, node_id: str, body: bytes, timeout: float) -> bytes:
        """Raises ``NodeUnreachable`` when the node does not answer within ``timeout`` and
        ``LookupError`` when no such node is alive."""

    async def request_all(self, body: bytes, timeout: float) -> list[bytes]:
        """Answers of every live node, this one included (``NodeUnreachable`` if one is
        missing after ``timeout``)."""

    # -- connection registry -----------------------------------------------------------------

    def register(self, key: str) -> None: ...

    def unregister(self, key: str) -> None: ...

    async def locate(self, key: str) -> str | None:
        """The live node holding ``key``, else None."""

    # -- channel counts ----------------------------------------------------------------------

    async def set_count(self, scope: str, channel: str, count: int) -> Transition | None:
        """Record this node's subscriber count (0 removes it); the cluster-wide transition."""

    async def count(self, scope: str, channel: str) -> int:
        """Subscribers of ``channel`` on all live nodes."""

    async def channels(self, scope: str, prefix: str = "") -> dict[str, int]:
        """Occupied channels of ``scope`` starting with ``prefix`` → subscriber counts."""

    # -- presence ----------------------------------------------------------------------------

    async def presence_join(
        self, scope: str, channel: str, user_key: str, member: bytes
    ) -> Transition | None:
        """This node now has a socket of ``user_key`` in ``channel``: MEMBER_ADDED when the
        user was present on no node. The first ``member`` document given is kept."""

    async def presence_leave(self, scope: str, channel: str, user_key: str) -> Transition | None:
        """This node has no socket of ``user_key`` left: MEMBER_REMOVED when no node has."""

    async def presence_members(self, scope: str, channel: str) -> dict[str, bytes]:
        """``user_key`` → member document, over all live nodes."""
