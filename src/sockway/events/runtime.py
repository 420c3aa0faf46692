"""The runtime of one ``type: events`` API: subscribe, publish and fan-out (appsync-events spec).

Shared by the realtime WebSocket (``events/realtime.py``) and HTTP publish
(``events/publish_http.py``). Validation answers come from ``events/wire``; authorization
from ``events/auth``; handlers are ``Integration``s built by the factory.

Delivery guarantee (spec §4): a publication reaches every matching subscription exactly once,
on every node of the cluster (``events/cluster``, issue 6), and publications to one
channel are delivered in the order they arrived on the publishing node, even when their
handlers finish out of order (``ChannelSequencer``).

When the broker is unavailable (issue 6 §4): a WebSocket publish still reaches this node's
subscribers and is acknowledged as usual (the outage is logged and counted in
``sockway_cluster_publish_failures``); an HTTP publish is refused with 503
``ServiceUnavailableException`` and nothing is delivered anywhere (the other nodes are sent it
before this node's subscribers are; docs/brokers.md "Delivery guarantee").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from sockway.brokers.base import BrokerUnavailable
from sockway.core.channels import ChannelPath, InvalidChannel, SubscriptionIndex, parse_channel
from sockway.core.connection import Connection, State
from sockway.core.frames import encode_text_frame, text_frame_header
from sockway.core.node import INTERNAL_ERROR_CLOSE, Node
from sockway.events import handler_events as ev
from sockway.events.auth import PUBLISH, SUBSCRIBE, AuthRequest, EventsAuth
from sockway.events.cluster import EventsClusterMember
from sockway.events.operations import (
    ChannelSequencer,
    Handler,
    NamespaceHandlers,
    Operation,
    Subscription,
    current_operation,
)
from sockway.events.settings import EventsApi
from sockway.events.wire import (
    BAD_REQUEST,
    SERVICE_UNAVAILABLE,
    EventsError,
    broadcast_error,
    encode_event,
)
from sockway.frontdoor.cluster import Cluster
from sockway.observability.metrics import Metrics
from sockway.observability.tap import Activity, Tap, invocation
from sockway.runtimes import output
from sockway.runtimes.base import Invocation, InvocationError, InvocationTimeout

# orjson reads 1,024 levels of nesting but writes only 254: an event is parsed into the
# handlers' event (``{"events": [{"payload": ...}]}``, inside a worker's request) and may come
# back in their answer, so an event nested deeper than this cannot be handed on. Refused as a
# bad request (the client's fault), not an internal error.
MAX_EVENT_DEPTH = 240
_HANDLER_EVENT_HEADROOM = 254 - MAX_EVENT_DEPTH


def _encodable_in_handler_events(doc: object) -> bool:
    wrapped = doc
    for _ in range(_HANDLER_EVENT_HEADROOM):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return False
    return True


log = logging.getLogger("sockway.appsync")


@dataclass
class EventsRuntime:
    settings: EventsApi
    node: Node
    metrics: Metrics
    new_id: Callable[[], str]
    auth: EventsAuth
    handlers: dict[str, NamespaceHandlers]
    cluster: Cluster
    domain_name: str | None = None
    index: SubscriptionIndex[Subscription] = field(default_factory=SubscriptionIndex)
    sequencer: ChannelSequencer = field(default_factory=ChannelSequencer)
    # Tasks the gateway waits for when draining.
    sessions: set[asyncio.Task[Any]] = field(default_factory=set)
    inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    open_count: int = 0  # open realtime connections, both transports
    draining: bool = False
    tap: Tap = field(default_factory=Tap)  # access log and console (observability/tap.py)
    peers: EventsClusterMember[Subscription] = field(init=False)

    def __post_init__(self) -> None:
        self.peers = EventsClusterMember(
            self.cluster, self.name, self.index, self.deliver, self.metrics
        )

    @property
    def name(self) -> str:
        return self.settings.name

    # -- channels -------------------------------------------------------------------------

    def channel(self, raw: object, *, subscribe: bool) -> ChannelPath:
        """Parse and check the namespace exists; ``BadRequestException`` otherwise (§4)."""
        try:
            channel = parse_channel(raw, allow_wildcard=subscribe)
        except InvalidChannel as exc:
            raise EventsError(BAD_REQUEST, str(exc)) from None
        if channel.namespace not in self.settings.namespaces:
            raise EventsError(BAD_REQUEST, f"Channel namespace '{channel.namespace}' not found")
        return channel

    # -- subscribe ------------------------------------------------------------------------

    async def authorize_subscribe(self, channel: ChannelPath, op: Operation) -> None:
        """Subscribe auth, then the namespace's onSubscribe handler (§3, §6.3)."""
        modes = self.settings.subscribe_modes(channel.namespace)
        identity = await self.auth.authorize(
            AuthRequest(SUBSCRIBE, channel, op.auth_headers, op.signed_body, op.source_ip), modes
        )
        handler = self.handlers[channel.namespace].on_subscribe
        if handler is None:
            return
        event = ev.handler_event(
            operation=ev.SUBSCRIBE,
            channel=channel,
            identity=identity,
            headers=op.request_headers,
            domain_name=self.domain_name,
            events=None,
        )
        if handler.spec.invoke_type == "EVENT":
            self._background(handler, event)
            return
        ev.subscribe_answer(await self._invoke(handler, event))

    def add_subscription(self, sub: Subscription) -> None:
        """Index it; the node subscribes the broker key on its first subscriber (issue 6)."""
        self.peers.add(sub.channel, sub)

    def remove_subscription(self, sub: Subscription) -> None:
        self.peers.remove(sub.channel, sub)

    # -- publish --------------------------------------------------------------------------

    def check_events(self, raw: object) -> list[str]:
        """``events``: 1..max strings of valid JSON, each within ``max_event_bytes`` (§1.3, §5)."""
        limits = self.settings.limits
        if not isinstance(raw, list) or not raw:
            raise EventsError(BAD_REQUEST, "events must be a non-empty list of JSON strings")
        if len(raw) > limits.max_events_per_publish:
            raise EventsError(
                BAD_REQUEST, f"Too many events: at most {limits.max_events_per_publish} per publish"
            )
        for item in raw:
            if not isinstance(item, str):
                raise EventsError(BAD_REQUEST, "Each event must be a string holding JSON")
            if len(item.encode()) > limits.max_event_bytes:
                raise EventsError(
                    BAD_REQUEST, f"Event exceeds the maximum size of {limits.max_event_bytes} bytes"
                )
            try:
                doc = orjson.loads(item)
            except orjson.JSONDecodeError:
                raise EventsError(BAD_REQUEST, "Each event must be valid JSON") from None
            if not _encodable_in_handler_events(doc):
                raise EventsError(
                    BAD_REQUEST,
                    f"Event nesting exceeds the maximum depth of {MAX_EVENT_DEPTH} levels",
                )
        return list(raw)

    async def publish(
        self, raw_channel: object, raw_events: object, op: Operation, *, all_nodes: bool = False
    ) -> ev.PublishOutcome:
        """Validate, authorize, run onPublish and broadcast; the per-event outcome (§1.4, §6).

        Broadcast = this node's subscribers, then one broker publication for the other nodes,
        sent while the channel's turn is held so one node's publications to a channel reach
        the others in order. ``all_nodes`` (HTTP publish): the other nodes are sent it first
        and a broker that cannot take it (down, or a node that is up not resubscribed yet)
        answers a retryable 503 with nothing delivered anywhere; then this node's subscribers.
        Otherwise a broker outage only limits the delivery to this node (logged, counted).
        Raises ``EventsError`` for a request that fails as a whole.
        """
        channel = self.channel(raw_channel, subscribe=False)
        previous, mine = self.sequencer.enter(channel.path)
        try:
            texts = self.check_events(raw_events)
            modes = self.settings.publish_modes(channel.namespace)
            identity = await self.auth.authorize(
                AuthRequest(PUBLISH, channel, op.auth_headers, op.signed_body, op.source_ip), modes
            )
            if all_nodes:
                self._require_cluster(channel)
            incoming = [ev.IncomingEvent(str(uuid.uuid4()), i, t) for i, t in enumerate(texts)]
            outcome = await self._on_publish(channel, incoming, identity, op)
            await self.sequencer.wait_turn(previous)
            if all_nodes:
                self._require_cluster(channel)
                # The other nodes first: a 503 then means nobody got it (docs/brokers.md).
                if outcome.broadcast:
                    await self._to_other_nodes(channel, outcome.broadcast, True)
                self.fan_out(channel, outcome.broadcast)
            else:
                self.fan_out(channel, outcome.broadcast)
                if outcome.broadcast:
                    await self._to_other_nodes(channel, outcome.broadcast, False)
            return outcome
        finally:
            self.sequencer.leave(channel.path, mine)

    def _require_cluster(self, channel: ChannelPath) -> None:
        if not self.peers.available:
            self.peers.failed(channel, BrokerUnavailable("HTTP publish refused"))
            raise EventsError(
                SERVICE_UNAVAILABLE,
                "The cluster broker is unavailable; nothing was published. Retry later.",
                status=503,
            )

    async def _to_other_nodes(self, channel: ChannelPath, texts: list[str], strict: bool) -> None:
        try:
            await self.peers.publish(channel, texts, strict)
        except BrokerUnavailable:  # counted and logged by ``peers``
            if strict:
                raise EventsError(
                    SERVICE_UNAVAILABLE,
                    "The cluster broker is unavailable; nothing was published. Retry later.",
                    status=503,
                ) from None

    async def _on_publish(
        self, channel: ChannelPath, incoming: list[ev.IncomingEvent], identity: Any, op: Operation
    ) -> ev.PublishOutcome:
        handler = self.handlers[channel.namespace].on_publish
        if handler is None:
            return ev.unchanged(incoming)
        event = ev.handler_event(
            operation=ev.PUBLISH,
            channel=channel,
            identity=identity,
            headers=op.request_headers,
            domain_name=self.domain_name,
            events=incoming,
        )
        if handler.spec.invoke_type == "EVENT":
            self._background(handler, event)  # §6.3: not awaited, events broadcast as usual
            return ev.unchanged(incoming)
        return ev.publish_answer(await self._invoke(handler, event), incoming)

    def fan_out(self, channel: ChannelPath, texts: list[str]) -> int:
        """Send each event to every matching subscription; never awaits a subscriber.

        The event is JSON-encoded once per publication; each subscription only prefixes its
        own frame head (its id differs), so the per-recipient cost is one concatenation
        (measured: 0.29 µs per subscriber vs 0.72 µs for a JSON dump per subscriber, N=1,000).
        A subscriber whose outbox is full is closed, one that is closing skipped, one whose
        write raises logged and cut off (1011): the others still get the event. An event
        a handler made larger than ``max_event_bytes`` is not delivered: each subscription gets
        ``broadcast_error`` (MessageProcessingError) instead (spec §2.2, §5: 240 KB delivered).
        """
        delivered = self.deliver(list(self.index.match(channel)), texts)
        if self.tap.detailed:
            for text in texts:
                self.tap.emit(
                    Activity(
                        "publish",
                        self.name,
                        channel=channel.path,
                        payload=text,
                        detail={"delivered": delivered},
                    )
                )
        return delivered

    def deliver(self, subs: list[Subscription], texts: list[str]) -> int:
        """``fan_out`` to these subscriptions (also what a publication of another node
        reaches, ``events/cluster``); the number of frames sent."""
        if not subs or not texts:
            return 0
        now = self.node.now_ms()
        sent = 0
        slow: list[Connection] = []
        broken: list[Connection] = []
        limit = self.settings.limits.max_event_bytes
        open_ = State.OPEN
        for text in texts:
            oversize = len(text.encode()) > limit
            tail = encode_event(text) + b"}"
            # Frame headers by the subscription's head length (ids differ, their lengths
            # rarely do): each frame is then one join of three pieces, not three allocations.
            headers: dict[int, bytes] = {}
            for sub in subs:
                if oversize:
                    frame = encode_text_frame(broadcast_error(sub.id))
                else:
                    head = sub.frame_head
                    header = headers.get(len(head))
                    if header is None:
                        header = headers[len(head)] = text_frame_header(len(head) + len(tail))
                    frame = b"".join((header, head, tail))
                # Connection.send_frame inlined, as in Node.publish: one Python call less per
                # recipient (issue 18: counted with `make bench-instructions`).
                conn = sub.conn
                if conn.state is not open_:
                    continue
                sink = conn.sink
                if sink.buffered_bytes() > conn.outbox_max_bytes:
                    slow.append(conn)
                    continue
                try:  # a write that raises (our bug) never stops the fan-out (issue 13)
                    sink.write_frame(frame)
                except Exception:
                    log.exception("writing to %s failed", conn.id, extra={"api": self.name})
                    conn.state = State.CLOSING  # nothing more to it; cut after the loop
                    broken.append(conn)
                    continue
                conn.last_active_ms = now
                sent += 1
        for conn in slow:
            if self.node.drop_slow(conn):  # once per connection, however many it missed
                self.metrics.slow_consumers.labels(self.name).inc()
        for conn in broken:
            conn.sink.cut(*INTERNAL_ERROR_CLOSE)
        self.metrics.messages_out.labels(self.name).inc(sent)
        return sent

    # -- handlers -------------------------------------------------------------------------

    async def _invoke(self, handler: Handler, event: dict[str, Any]) -> Any:
        request_id = str(uuid.uuid4())
        slot = f"{event['info']['channelNamespace']['name']}.{event['info']['operation']}"
        started = time.monotonic()
        outcome, stack = "ok", ""
        # Always captured: print() gets Lambda's prefix even with no one watching.
        capture = output.capture(request_id)
        cause = current_operation.get()  # (connection id, operation id) of a WebSocket op
        try:
            with capture as out:
                return await handler.integration.invoke(
                    event, Invocation(request_id, handler.timeout_s)
                )
        except InvocationTimeout as exc:
            outcome = "timeout"
            self.metrics.handler_errors.labels(self.name, slot, "timeout").inc()
            log.error("handler %s timed out: %s", handler.integration.function_name, exc)
            raise ev.function_error("Timeout") from None
        except InvocationError as exc:
            outcome, stack = "error", exc.stack
            self.metrics.handler_errors.labels(self.name, slot, "error").inc()
            if exc.error_type != "UnauthorizedException":
                log.error(
                    "handler %s failed: %s: %s\n%s",
                    handler.integration.function_name,
                    exc.error_type,
                    exc.error_message,
                    exc.stack.rstrip(),
                )
            raise ev.function_error(exc.error_type) from None
        finally:
            self.metrics.handler_seconds.labels(self.name, slot).observe(time.monotonic() - started)
            if self.tap.detailed:
                self.tap.emit(
                    invocation(
                        self.name,
                        slot,
                        function=handler.integration.function_name,
                        request_id=request_id,
                        connection_id=cause[0] if cause else None,
                        duration_ms=(time.monotonic() - started) * 1000,
                        outcome=outcome,
                        lines=out.lines,
                        stack=stack,
                        cause=cause[1] if cause else None,
                    )
                )

    def _background(self, handler: Handler, event: dict[str, Any]) -> None:
        """An ``EVENT`` invocation: run it, log its failure, do not wait for it (§6.3)."""

        async def run() -> None:
            # Already logged and counted; the result does not matter.
            with contextlib.suppress(EventsError):
                await self._invoke(handler, event)

        task = asyncio.get_running_loop().create_task(run())
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
