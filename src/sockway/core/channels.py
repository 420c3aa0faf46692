"""Hierarchical channel paths and wildcard subscriptions (appsync-events spec §4).

A channel path is 1-5 ``/``-separated segments of letters, digits and ``-`` (not at either end,
1-50 characters each); the first segment names the namespace. Paths are normalised to a leading
``/`` and no trailing ``/``. A subscription may end in a ``*`` segment, a multi-level prefix
match: ``/ns/*`` matches ``/ns/a`` and ``/ns/a/b`` but not ``/ns`` itself (Powertools' route
semantics, spec §4 and §6.4). The ``*`` counts toward the 5 segments. Publishing to a wildcard
is invalid.

``SubscriptionIndex`` maps a published path to every matching subscription, exactly once per
subscription, in a deterministic order (exact subscribers first, then wildcards from the
shortest prefix). It holds plain objects; sockets live in ``transport/``.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

MAX_SEGMENTS = 5
_SEGMENT = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?$")
WILDCARD = "*"


class InvalidChannel(ValueError):
    """The channel string breaks the naming rules (answered with BadRequestException)."""


@dataclass(frozen=True, slots=True)
class ChannelPath:
    """A validated, normalised channel path; ``wildcard`` when its last segment is ``*``."""

    segments: tuple[str, ...]

    @property
    def path(self) -> str:
        return "/" + "/".join(self.segments)

    @property
    def namespace(self) -> str:
        return self.segments[0]

    @property
    def wildcard(self) -> bool:
        return self.segments[-1] == WILDCARD

    @property
    def prefix(self) -> str:
        """For a wildcard ``/ns/a/*``: ``/ns/a``."""
        return "/" + "/".join(self.segments[:-1])


def parse_channel(raw: object, *, allow_wildcard: bool) -> ChannelPath:
    """Validate and normalise ``raw``; raise ``InvalidChannel`` when it breaks the rules."""
    if not isinstance(raw, str) or not raw:
        raise InvalidChannel("Invalid Channel Format")
    text = raw
    if text.startswith("/"):
        text = text[1:]
    if text.endswith("/"):
        text = text[:-1]
    segments = tuple(text.split("/"))
    if not 1 <= len(segments) <= MAX_SEGMENTS:
        raise InvalidChannel("Invalid Channel Format")
    for i, segment in enumerate(segments):
        if segment == WILDCARD and allow_wildcard and i == len(segments) - 1 and i > 0:
            continue
        if not _SEGMENT.match(segment):
            raise InvalidChannel("Invalid Channel Format")
    return ChannelPath(segments)


S = TypeVar("S", bound=Hashable)


class SubscriptionIndex(Generic[S]):
    """Exact and wildcard subscriptions of one API, looked up by published path."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[S, None]] = {}
        self._prefix: dict[str, dict[S, None]] = {}

    def add(self, channel: ChannelPath, sub: S) -> bool:
        """Add ``sub``; True when it is the first subscription of its key (``channel.path``)."""
        table, key = self._slot(channel)
        members = table.get(key)
        if members is None:
            members = table[key] = {}
        first = not members
        members[sub] = None
        return first

    def remove(self, channel: ChannelPath, sub: S) -> bool:
        """Remove ``sub``; True when it was the last subscription of its key."""
        table, key = self._slot(channel)
        members = table.get(key)
        if members is None or sub not in members:
            return False
        del members[sub]
        if members:
            return False
        del table[key]
        return True

    def members_of(self, key: str) -> list[S]:
        """The subscriptions of one key, ``ChannelPath.path`` of an exact (``/ns/a``) or a
        wildcard (``/ns/a/*``) subscription: what a publication matched on another node
        reaches here (issue 6), each subscription once."""
        if key.endswith("/" + WILDCARD):
            return list(self._prefix.get(key[:-2], ()))
        return list(self._exact.get(key, ()))

    def match(self, channel: ChannelPath) -> Iterator[S]:
        """Every subscription a publish to ``channel`` (not a wildcard) reaches, once each."""
        yield from list(self._exact.get(channel.path, ()))
        segments = channel.segments
        for depth in range(1, len(segments)):
            members = self._prefix.get("/" + "/".join(segments[:depth]))
            if members:
                yield from list(members)

    def __len__(self) -> int:
        return sum(map(len, self._exact.values())) + sum(map(len, self._prefix.values()))

    def _slot(self, channel: ChannelPath) -> tuple[dict[str, dict[S, None]], str]:
        if channel.wildcard:
            return self._prefix, channel.prefix
        return self._exact, channel.path
