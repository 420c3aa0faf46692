"""Prometheus metrics, one registry per gateway (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "sockway_connections", "Open WebSocket connections", ["api"], registry=r
        )
        self.connects = Counter(
            "sockway_connects", "Accepted WebSocket connections", ["api"], registry=r
        )
        self.connect_rejects = Counter(
            "sockway_connect_rejects",
            "Rejected upgrades by HTTP status",
            ["api", "status"],
            registry=r,
        )
        self.messages_in = Counter(
            "sockway_messages_in", "Messages received from clients", ["api"], registry=r
        )
        self.messages_out = Counter(
            "sockway_messages_out", "Frames sent to clients", ["api"], registry=r
        )
        self.handler_seconds = Histogram(
            "sockway_handler_duration_seconds", "Handler latency", ["api", "route"], registry=r
        )
        self.handler_errors = Counter(
            "sockway_handler_errors", "Handler failures", ["api", "route", "kind"], registry=r
        )
        self.management = Counter(
            "sockway_management_requests",
            "@connections/@channels calls",
            ["api", "operation", "status"],
            registry=r,
        )
        self.slow_consumers = Counter(
            "sockway_slow_consumer_disconnects",
            "Clients closed for a full outbox",
            ["api"],
            registry=r,
        )
        self.pusher_webhooks = Counter(
            "sockway_pusher_webhooks",
            "Pusher webhook events by outcome (delivered, retried, failed, dropped)",
            ["api", "outcome"],
            registry=r,
        )
        # -- scale-out (issue 6): shared by every API type ------------------------------------
        self.cluster_publications = Counter(
            "sockway_cluster_publications",
            "Channel publications exchanged with other nodes over the broker "
            "(direction: out = sent, in = received, once per matching subscription key)",
            ["api", "direction"],
            registry=r,
        )
        self.cluster_publish_failures = Counter(
            "sockway_cluster_publish_failures",
            "Publications the other nodes did not get because the broker was unavailable "
            "(delivered on this node only, or refused)",
            ["api"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
