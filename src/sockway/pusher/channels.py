"""Channel kinds and names (pusher spec §1.5, §1.7, §1.8)."""

from __future__ import annotations

import enum
import re

SERVER_TO_USER_PREFIX = "#server-to-user-"
_NAME = re.compile(r"^#?[-a-zA-Z0-9_=@,.;]+$")
_CACHE_PREFIXES = ("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-")


class Kind(enum.Enum):
    PUBLIC = "public"
    PRIVATE = "private"
    ENCRYPTED = "encrypted"
    PRESENCE = "presence"
    SERVER_TO_USER = "server_to_user"


def kind_of(channel: str) -> Kind:
    """Prefix match anchored at the start (soketi's unanchored regexes are a bug, §1.5)."""
    if channel.startswith("private-encrypted-"):
        return Kind.ENCRYPTED
    if channel.startswith("private-"):
        return Kind.PRIVATE
    if channel.startswith("presence-"):
        return Kind.PRESENCE
    if channel.startswith(SERVER_TO_USER_PREFIX):
        return Kind.SERVER_TO_USER
    return Kind.PUBLIC


def needs_auth(kind: Kind) -> bool:
    return kind in (Kind.PRIVATE, Kind.ENCRYPTED, Kind.PRESENCE)


def is_cache(channel: str) -> bool:
    return channel.startswith(_CACHE_PREFIXES)


def valid_name(channel: str, max_length: int) -> bool:
    return len(channel) <= max_length and _NAME.match(channel) is not None


def allows_client_events(kind: Kind) -> bool:
    """Pusher allows client events on private and presence channels only; pusher-js refuses
    them on encrypted channels (§1.6: soketi's laxness is not copied)."""
    return kind in (Kind.PRIVATE, Kind.PRESENCE)


def server_to_user_id(channel: str) -> str | None:
    if channel.startswith(SERVER_TO_USER_PREFIX):
        return channel[len(SERVER_TO_USER_PREFIX) :]
    return None
