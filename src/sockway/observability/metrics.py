"""Prometheus metrics, one registry per gateway (no module-level state)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric


class Count:
    """One label set of a ``FastCounter``: a plain number."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class FastCounter:
    """A labelled counter for the per-message paths, exported as a Prometheus counter.

    ``labels(...).inc()`` adds to a plain number read at scrape time: prometheus_client's
    ``Counter`` takes a lock per increment, which sockway does not need (it counts on the
    event-loop thread only). Measured on the two-way echo route, bench/ANALYSIS.md.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._children: dict[tuple[str, ...], Count] = {}
        registry.register(self)

    def labels(self, *values: str) -> Count:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = Count()
        return child

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self._children.items():
            family.add_metric(list(values), child.value)
        yield family


class Observations:
    """One label set of a ``FastHistogram``: bucket counts and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # first bound >= amount ("le")
        self.sum += amount


class FastHistogram:
    """A labelled histogram with Prometheus' default buckets, like ``FastCounter``: a list
    index and an add per observation instead of a lock and a loop over the buckets."""

    def __init__(
        self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.bounds = tuple(Histogram.DEFAULT_BUCKETS)  # ends with +Inf
        self._le = [repr(b) if b != float("inf") else "+Inf" for b in self.bounds]
        self._children: dict[tuple[str, ...], Observations] = {}
        registry.register(self)

    def labels(self, *values: str) -> Observations:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = Observations(self.bounds)
        return child

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self._children.items():
            total, buckets = 0, []
            for le, count in zip(self._le, child.counts, strict=True):
                total += count
                buckets.append((le, total))
            family.add_metric(list(values), buckets, child.sum)
        yield family


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
        self.messages_in = FastCounter(
            "sockway_messages_in", "Messages received from clients", ["api"], r
        )
        self.messages_out = FastCounter(
            "sockway_messages_out", "Frames sent to clients", ["api"], r
        )
        self.handler_seconds = FastHistogram(
            "sockway_handler_duration_seconds", "Handler latency", ["api", "route"], r
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
        # -- Pusher apps' usage, soketi's per-app metrics (issue 17; README "Operations") ---------
        self.pusher_disconnections = Counter(
            "sockway_pusher_disconnections",
            "Pusher sockets that ended (after connection_established)",
            ["api", "app_id"],
            registry=r,
        )
        self.pusher_ws_bytes = FastCounter(
            "sockway_pusher_ws_bytes",
            "Pusher WebSocket message bytes (direction: received, sent; sent once per recipient)",
            ["api", "app_id", "direction"],
            r,
        )
        self.pusher_http_calls = Counter(
            "sockway_pusher_http_calls",
            "Pusher HTTP API requests by status",
            ["api", "app_id", "status"],
            registry=r,
        )
        self.pusher_http_bytes = FastCounter(
            "sockway_pusher_http_bytes",
            "Pusher HTTP API body bytes (direction: received, sent)",
            ["api", "app_id", "direction"],
            r,
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
