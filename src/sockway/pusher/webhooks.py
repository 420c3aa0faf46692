"""Webhook delivery for Pusher apps (pusher spec §4): signed, filtered, retried, ordered.

Guarantees:
- Each webhook receives only the events its ``event_types`` and ``filter`` select, in a body
  ``{"time_ms", "events"}`` signed over the exact bytes sent (``X-Pusher-Signature``), with
  ``Content-Type: application/json`` exactly (the node SDK compares it strictly).
- Events of one channel reach a webhook in the order they happened: one delivery worker per
  (webhook, channel); events that queue up while a request is in flight go in the next body.
- A transient failure (network error, timeout, 408, 429, 5xx) is retried with doubling backoff
  while the body is younger than ``retry_window_s`` (its ``time_ms`` is kept, since the SDKs'
  validators reject bodies older than 5 minutes). What finally fails, or overflows the bounded
  queue, is logged and counted (``sockway_pusher_webhooks{outcome=...}``), never dropped silently.

Targets sit behind ``WebhookTarget`` so an HTTP URL and an AWS Lambda function are the same
to the queue (see ``pusher_webhook_targets``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from sockway.observability.metrics import Metrics
from sockway.pusher.settings import PusherApp, WebhookSpec
from sockway.pusher.signatures import webhook_signature

log = logging.getLogger("sockway.pusher.webhooks")


class DeliveryFailed(Exception):
    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class WebhookTarget(Protocol):
    """Where one webhook goes; ``deliver`` raises ``DeliveryFailed`` unless accepted."""

    @property
    def description(self) -> str: ...

    async def deliver(self, body: bytes, headers: dict[str, str], timeout_s: float) -> None: ...

    async def close(self) -> None: ...


def matches(spec: WebhookSpec, event: dict[str, Any]) -> bool:
    if event["name"] not in spec.event_types:
        return False
    channel = str(event.get("channel", ""))
    f = spec.filter
    if f.channel_name_starts_with is not None and not channel.startswith(
        f.channel_name_starts_with
    ):
        return False
    return f.channel_name_ends_with is None or channel.endswith(f.channel_name_ends_with)


class _HookQueue:
    """The pending events and delivery workers of one webhook."""

    def __init__(self, owner: Webhooks, spec: WebhookSpec, target: WebhookTarget) -> None:
        self.owner = owner
        self.spec = spec
        self.target = target
        self.pending: dict[str, deque[tuple[int, dict[str, Any]]]] = {}
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.size = 0
        self.in_flight = asyncio.Semaphore(owner.app.webhook_delivery.max_concurrent_requests)

    def put(self, time_ms: int, event: dict[str, Any]) -> None:
        limits = self.owner.app.webhook_delivery
        if self.size >= limits.max_pending_events:
            self.owner.count("dropped")
            log.error(
                "webhook %s: queue full (%d events), %s on %s not delivered",
                self.target.description,
                self.size,
                event["name"],
                event.get("channel"),
                extra={"api": self.owner.app.name},
            )
            return
        # Batching (soketi's ``webhooks.batching``): one queue for all channels, so a window's
        # events of every channel share a request and still arrive in order.
        channel = "" if limits.batch_window_ms else str(event.get("channel", ""))
        self.pending.setdefault(channel, deque()).append((time_ms, event))
        self.size += 1
        if channel not in self.workers:
            task = asyncio.get_running_loop().create_task(self._run(channel))
            self.workers[channel] = task

    async def _run(self, channel: str) -> None:
        queue = self.pending[channel]
        limits = self.owner.app.webhook_delivery
        limit = limits.max_batch_events
        try:
            if limits.batch_window_ms and not self.owner.draining.is_set():
                # The first event opens the window; a drain closes it early (nothing is lost).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.owner.draining.wait(), limits.batch_window_ms / 1000
                    )
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), limit))]
                self.size -= len(batch)
                await self._deliver(batch)
        finally:
            del self.workers[channel]
            if not queue:
                self.pending.pop(channel, None)

    async def _deliver(self, batch: list[tuple[int, dict[str, Any]]]) -> None:
        app = self.owner.app
        limits = app.webhook_delivery
        time_ms = batch[0][0]
        body = orjson.dumps({"time_ms": time_ms, "events": [event for _, event in batch]})
        headers = {
            **self.spec.headers,
            "Content-Type": "application/json",
            "X-Pusher-Key": app.key,
            "X-Pusher-Signature": webhook_signature(app.secret, body),
        }
        delay = limits.initial_backoff_s
        extra = {"api": app.name}
        while True:
            try:
                async with self.in_flight:
                    await self.target.deliver(body, headers, limits.timeout_s)
            except DeliveryFailed as exc:
                age_s = (self.owner.now_ms() - time_ms) / 1000
                if (
                    not exc.retryable
                    or self.owner.draining.is_set()
                    or age_s + delay > limits.retry_window_s
                ):
                    self.owner.count("failed", len(batch))
                    log.error(
                        "webhook %s: %d events not delivered (%s); giving up after %.1f s: %s",
                        self.target.description,
                        len(batch),
                        ", ".join(sorted({str(e["name"]) for _, e in batch})),
                        age_s,
                        exc,
                        extra=extra,
                    )
                    return
                self.owner.count("retried")
                log.warning(
                    "webhook %s failed (%s); retrying in %.1f s",
                    self.target.description,
                    exc,
                    delay,
                    extra=extra,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.owner.draining.wait(), delay)
                delay = min(delay * 2, limits.max_backoff_s)
                continue
            self.owner.count("delivered", len(batch))
            return


class Webhooks:
    """The webhooks of one app. ``emit`` never blocks; delivery runs in background tasks."""

    def __init__(
        self,
        app: PusherApp,
        targets: list[tuple[WebhookSpec, WebhookTarget]],
        metrics: Metrics,
        now_ms: Callable[[], int],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.now_ms = now_ms
        self.queues = [_HookQueue(self, spec, target) for spec, target in targets]
        self.wanted = frozenset(t for spec, _ in targets for t in spec.event_types)
        self.draining = asyncio.Event()

    def wants(self, name: str) -> bool:
        return name in self.wanted

    def emit(self, event: dict[str, Any]) -> None:
        """Queue ``event`` (``name``, ``channel``, ...) for every webhook that selects it."""
        if event["name"] not in self.wanted:
            return
        time_ms = self.now_ms()
        for queue in self.queues:
            if matches(queue.spec, event):
                queue.put(time_ms, event)

    def count(self, outcome: str, n: int = 1) -> None:
        self.metrics.pusher_webhooks.labels(self.app.name, outcome).inc(n)

    def busy(self) -> bool:
        return any(queue.workers for queue in self.queues)

    async def finish(self) -> None:
        """Stop backing off (one more attempt each), wait for the workers, close the targets."""
        self.draining.set()
        while self.busy():
            await asyncio.gather(
                *(t for q in self.queues for t in list(q.workers.values())),
                return_exceptions=True,
            )
        for queue in self.queues:
            await queue.target.close()
