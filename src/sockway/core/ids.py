"""Identifiers and clocks, injected into the node so tests can control them."""

from __future__ import annotations

import base64
import collections
import os
import time
from collections.abc import Callable
from typing import NewType, Protocol

ConnectionId = NewType("ConnectionId", str)
ChannelName = NewType("ChannelName", str)
RouteKey = NewType("RouteKey", str)

IdGenerator = Callable[[], str]


_ID_BYTES = 11
_IDS_PER_REFILL = 256
_ids: collections.deque[str] = collections.deque()
# A forked child must not hand out the ids its parent already has in hand.
os.register_at_fork(after_in_child=_ids.clear)


def aws_style_id() -> str:
    """A 16-character id shaped like API Gateway's (apigw spec §1.5).

    URL-safe base64 of 11 random bytes (``os.urandom``) plus one ``=`` pad, e.g.
    ``"BFHPhfCWIAMCKlQ="``; may contain ``-`` and ``_`` like the real ones, so callers must
    percent-encode it in URLs. Made 256 at a time from one ``os.urandom`` call (a message
    on a route takes two ids; a ``getrandom`` call each was measurable, bench/ANALYSIS.md);
    ``deque.popleft`` hands each out once, from any thread.
    """
    while True:
        try:
            return _ids.popleft()
        except IndexError:
            raw = os.urandom(_ID_BYTES * _IDS_PER_REFILL)
            _ids.extend(
                base64.urlsafe_b64encode(raw[i : i + _ID_BYTES]).decode("ascii")
                for i in range(0, len(raw), _ID_BYTES)
            )


class Clock(Protocol):
    """Wall-clock time (epoch seconds) and a monotonic clock for deadlines."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
