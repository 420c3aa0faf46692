"""Identifiers and clocks, injected into the node so tests can control them."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from typing import NewType, Protocol

ConnectionId = NewType("ConnectionId", str)
ChannelName = NewType("ChannelName", str)
RouteKey = NewType("RouteKey", str)

IdGenerator = Callable[[], str]


def aws_style_id() -> str:
    """A 16-character id shaped like API Gateway's (apigw spec §1.5).

    URL-safe base64 of 11 random bytes plus one ``=`` pad, e.g. ``"BFHPhfCWIAMCKlQ="``;
    may contain ``-`` and ``_`` like the real ones, so callers must percent-encode it in URLs.
    """
    return base64.urlsafe_b64encode(os.urandom(11)).decode("ascii")


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
