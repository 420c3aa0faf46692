"""The console's bounded memory of what happened: the last N items of the whole gateway, of
each connection and of each channel, and the last N handler invocations.

Payloads are cut to ``payload_max_bytes`` when recorded (so the memory bound holds whatever
clients send) and secrets are masked when an item is shown (``mask``): values of keys such as
``Authorization``, ``auth`` (Pusher's channel signature), ``cookie``, and any key ending in
``token``, ``secret``, ``password``, ``signature``, ``api-key``/``apikey`` or
``credential(s)`` (``x-api-key``, ``sessionToken``, ``client_secret``); in plain text,
``Authorization:``, ``x-api-key=`` and the like.
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict, deque
from typing import Any

import orjson

from sockway.observability.tap import Activity, log_lines

MASK = "***"
# Keys whose values are secrets wherever they appear in a JSON payload (case-insensitive).
_SECRET_KEY = re.compile(
    r"^(authorization|auth|cookie|set-cookie|"
    r".*(token|secret|password|passwd|signature|api[-_]?key|credentials?))$",
    re.IGNORECASE,
)
_SECRET_TEXT = re.compile(
    r"(?i)\b(authorization|x-api-key|api[-_]?key|auth|signature|password|token|secret)"
    r"(\"?\s*[:=]\s*\"?)((?:Bearer|Basic|AWS4-HMAC-SHA256)\s+)?([^\s\",{}\[\]]+)"
)
# Per-connection and per-channel views together keep at most this many times ``items``
# (each kind): the least recently active views are dropped first. With the defaults (500
# items, 2 KB payloads) that bounds the console to ~21 x 500 items, ~20 MB at worst.
KEYED_BUDGET = 10


def mask_value(value: Any) -> Any:
    """``value`` (decoded JSON) with every secret-named key's value replaced by ``***``."""
    if isinstance(value, dict):
        # A secret-named key holding an object (AppSync's ``authorization``) is walked: its
        # own secret keys are masked, the rest (``host``) stays readable.
        return {
            k: (
                MASK
                if _SECRET_KEY.match(str(k)) and not isinstance(v, dict | list)
                else mask_value(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_text(text: str) -> str:
    """Mask secrets in text: JSON is masked by key; other text by ``name: value`` patterns."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            decoded = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # truncated JSON: fall through to the text patterns
        else:
            return orjson.dumps(mask_value(decoded)).decode()
    return _SECRET_TEXT.sub(lambda m: m[1] + m[2] + (m[3] or "") + MASK, text)


class _Item:
    __slots__ = ("activity", "seq", "size")

    def __init__(self, seq: int, activity: Activity, size: int) -> None:
        self.seq = seq
        self.activity = activity
        self.size = size  # the payload's length before truncation


class _Views:
    """Keyed tails (one per connection or channel), each the last ``per_view`` items, all
    together at most ``budget`` items: the least recently active view goes first."""

    def __init__(self, per_view: int, budget: int) -> None:
        self.per_view = per_view
        self.budget = budget
        self.count = 0
        self._views: OrderedDict[str, deque[_Item]] = OrderedDict()

    def add(self, key: str, item: _Item) -> None:
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = deque(maxlen=self.per_view)
        else:
            self._views.move_to_end(key)
        if len(view) == self.per_view:
            self.count -= 1  # the deque drops its oldest
        view.append(item)
        self.count += 1
        while self.count > self.budget:
            _, oldest = self._views.popitem(last=False)
            self.count -= len(oldest)

    def get(self, key: str) -> deque[_Item] | tuple[()]:
        return self._views.get(key, ())

    def __len__(self) -> int:
        return len(self._views)


class Tail:
    """Bounded views of the activity stream (``record`` is a ``Tap`` listener)."""

    def __init__(self, items: int, payload_max_bytes: int) -> None:
        self.items = items
        self.payload_max = payload_max_bytes
        self._seq = itertools.count(1)
        self.all: deque[_Item] = deque(maxlen=items)
        self.invocations: deque[_Item] = deque(maxlen=items)
        self.by_connection = _Views(items, items * KEYED_BUDGET)
        self.by_channel = _Views(items, items * KEYED_BUDGET)
        self.listeners: list[Any] = []  # callables given each new item's JSON form

    def record(self, activity: Activity) -> None:
        payload = activity.payload
        size = 0
        if payload is not None:
            size = len(payload)
            if size > self.payload_max:
                activity.payload = payload[: self.payload_max]
        item = _Item(next(self._seq), activity, size)
        if activity.kind == "invoke":
            self.invocations.append(item)
        else:
            self.all.append(item)
        if activity.connection_id:
            self.by_connection.add(f"{activity.api}/{activity.connection_id}", item)
        if activity.channel:
            self.by_channel.add(f"{activity.api}/{activity.channel}", item)
        if self.listeners:
            shown = self.show(item)
            for listener in tuple(self.listeners):
                listener(shown)

    def show(self, item: _Item) -> dict[str, Any]:
        """The item as the page gets it: secrets masked, truncation said."""
        a = item.activity
        out: dict[str, Any] = {
            "seq": item.seq,
            "kind": a.kind,
            "api": a.api,
            "time": a.time_s,
            "connectionId": a.connection_id,
            "routeKey": a.route_key,
            "status": a.status,
            "latencyMs": None if a.latency_ms is None else round(a.latency_ms, 2),
            "requestId": a.request_id,
            "ip": a.ip,
            "channel": a.channel,
        }
        if a.payload is not None:
            out["payload"] = mask_text(a.payload)
            out["payloadBytes"] = item.size
            out["truncated"] = item.size > len(a.payload)
        if a.kind == "invoke":
            d = a.detail
            out["detail"] = {
                "function": d.get("function"),
                "outcome": d.get("outcome"),
                "cause": d.get("cause"),
                "logs": [mask_text(line) for line in log_lines(a)],
            }
        elif a.detail:
            out["detail"] = mask_value(a.detail)
        return out

    def view(
        self, connection: str | None = None, channel: str | None = None
    ) -> list[dict[str, Any]]:
        """The kept items of one view (``api/id`` or ``api/channel`` keys), oldest first."""
        if connection is not None:
            items = self.by_connection.get(connection)
        elif channel is not None:
            items = self.by_channel.get(channel)
        else:
            items = self.all
        return [self.show(i) for i in items]

    def recent_invocations(self) -> list[dict[str, Any]]:
        return [self.show(i) for i in self.invocations]
