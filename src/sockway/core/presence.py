"""Presence membership: who is in a presence channel, deduplicated by user id.

A user is a member while at least one of their sockets is subscribed (pusher spec §1.3:
``member_added`` only for a user not already present, ``member_removed`` only when the user's
last socket leaves). User ids are compared by their string form and reported as given, so
numbers stay numbers. Pure data: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Member:
    user_id: Any  # as the auth endpoint gave it (string or number)
    user_info: Any
    sockets: set[str] = field(default_factory=set)


@dataclass(slots=True)
class PresenceChannel:
    members: dict[str, Member] = field(default_factory=dict)  # str(user_id) → member

    def __len__(self) -> int:
        return len(self.members)


class Presence:
    """Presence channels of one app."""

    def __init__(self) -> None:
        self._channels: dict[str, PresenceChannel] = {}

    def channel(self, name: str) -> PresenceChannel | None:
        return self._channels.get(name)

    def user_count(self, name: str) -> int:
        ch = self._channels.get(name)
        return len(ch) if ch is not None else 0

    def has_user(self, name: str, user_id: Any) -> bool:
        ch = self._channels.get(name)
        return ch is not None and str(user_id) in ch.members

    def join(self, name: str, socket_id: str, user_id: Any, user_info: Any) -> bool:
        """Add a socket of ``user_id``; True when the user was not present before.

        The first socket's ``user_info`` is kept for the user (another tab does not rewrite it).
        """
        ch = self._channels.setdefault(name, PresenceChannel())
        key = str(user_id)
        member = ch.members.get(key)
        if member is None:
            ch.members[key] = Member(user_id, user_info, {socket_id})
            return True
        member.sockets.add(socket_id)
        return False

    def leave(self, name: str, socket_id: str, user_id: Any) -> Member | None:
        """Remove a socket; the member when it was the user's last socket, else None."""
        ch = self._channels.get(name)
        if ch is None:
            return None
        key = str(user_id)
        member = ch.members.get(key)
        if member is None:
            return None
        member.sockets.discard(socket_id)
        if member.sockets:
            return None
        del ch.members[key]
        if not ch.members:
            del self._channels[name]
        return member

    def snapshot(self, name: str) -> tuple[list[Any], dict[str, Any]]:
        """``(ids, hash)`` for ``subscription_succeeded`` (spec §1.3)."""
        ch = self._channels.get(name)
        if ch is None:
            return [], {}
        ids = [m.user_id for m in ch.members.values()]
        return ids, {key: m.user_info for key, m in ch.members.items()}
