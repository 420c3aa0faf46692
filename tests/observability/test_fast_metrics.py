"""The lock-free counter and histogram of the per-message paths expose exactly what
prometheus_client's own ``Counter`` and ``Histogram`` expose for the same observations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sockway.observability.metrics import FastCounter, FastHistogram, Metrics

# Bucket bounds themselves (0.005, 0.25, 10.0) and values between, under and over them.
VALUES = [0.0, 0.001, 0.005, 0.0051, 0.07, 0.25, 0.2500001, 1.0, 7.5, 10.0, 10.5, 3600.0]


def samples(registry: CollectorRegistry) -> list[str]:
    """Exposition lines without comments and ``_created`` timestamps (prometheus-only)."""
    return sorted(
        line
        for line in generate_latest(registry).decode().splitlines()
        if not line.startswith("#") and "_created" not in line
    )


def test_fast_histogram_exposes_what_prometheus_histogram_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = FastHistogram("h_seconds", "doc", ["api", "route"], ours)
    reference = Histogram("h_seconds", "doc", ["api", "route"], registry=theirs)
    for value in VALUES:
        fast.labels("a", "echo").observe(value)
        reference.labels("a", "echo").observe(value)
    fast.labels("b", "$default").observe(0.02)
    reference.labels("b", "$default").observe(0.02)
    assert samples(ours) == samples(theirs)
    assert 'h_seconds_bucket{api="a",le="0.005",route="echo"} 3.0' in samples(ours)


def test_fast_counter_exposes_what_prometheus_counter_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = FastCounter("c", "doc", ["api"], ours)
    reference = Counter("c", "doc", ["api"], registry=theirs)
    for api, n in (("a", 1), ("b", 3), ("a", 2)):
        fast.labels(api).inc(n)
        reference.labels(api).inc(n)
    fast.labels("a").inc()
    reference.labels("a").inc()
    assert samples(ours) == samples(theirs)
    assert 'c_total{api="a"} 4.0' in samples(ours)


def test_gateway_metrics_render_the_fast_families() -> None:
    metrics = Metrics()
    metrics.messages_in.labels("t").inc()
    metrics.handler_seconds.labels("t", "echo").observe(0.5)
    text = metrics.render().decode()
    assert 'sockway_messages_in_total{api="t"} 1.0' in text
    assert "# TYPE sockway_handler_duration_seconds histogram" in text
    assert 'sockway_handler_duration_seconds_count{api="t",route="echo"} 1.0' in text
