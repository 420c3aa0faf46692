"""Watchlist events for signed-in users (issue 17; Pusher "Watchlist events", pusher-js
``user.watchlist``; soketi never had them: soketi #1140, #806).

A user's ``pusher:signin`` ``user_data`` may carry ``"watchlist": [user ids]``. With the app's
``watchlist_events`` on, each of that user's sockets then gets
``pusher_internal:watchlist_events`` frames, ``data`` ``{"events": [{"name": "online" |
"offline", "user_ids": [...]}]}`` (pusher-js ``WatchlistFacade`` emits one event per entry):

- right after ``pusher:signin_success``: ``online`` with the watched users online now (none:
  no frame);
- ``online`` when a watched user's first signed-in socket anywhere in the cluster opens,
  ``offline`` when the last one ends (or its node dies).

Across nodes: a user is online while a node holds them in the broker's presence of the
reserved scope ``ONLINE`` (the same first-socket / last-socket transitions as presence
channels, so each goes out once); the announcement travels on the topic ``#watch|<user>``,
which a node holds while one of its sockets watches that user.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from sockway.brokers.base import BrokerUnavailable, Transition
from sockway.frontdoor.cluster import topic

if TYPE_CHECKING:
    from sockway.pusher.state import PusherAppState, PusherSocket

log = logging.getLogger("sockway.pusher.watchlist")

ONLINE = "#online|"  # presence scope of the signed-in users (never a channel name: "|")
WATCH = "#watch|"  # topic prefix of one user's online/offline announcements
MAX_WATCHLIST = 100  # Pusher's limit of a user's watchlist


def watch_topic(user_id: str) -> str:
    return WATCH + quote(user_id, safe="")


def events_frame(name: str, user_ids: list[str]) -> bytes:
    """``data`` is a JSON string, as Pusher's server messages (pusher-js parses it)."""
    data = orjson.dumps({"events": [{"name": name, "user_ids": user_ids}]}).decode()
    return orjson.dumps({"event": "pusher_internal:watchlist_events", "data": data})


def parse_watchlist(user: dict[str, Any]) -> tuple[str, ...] | str:
    """The ``watchlist`` of a signin's ``user_data``, or the reason it is refused."""
    raw = user.get("watchlist")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(
        isinstance(u, str | int) and not isinstance(u, bool) for u in raw
    ):
        return "The watchlist must be a list of user ids."
    if len(raw) > MAX_WATCHLIST:
        return f"The watchlist has more than {MAX_WATCHLIST} user ids."
    return tuple(dict.fromkeys(str(u) for u in raw))


class Watchlists:
    """The watchers on this node and the app's online users (see the module docstring)."""

    def __init__(self, app: PusherAppState) -> None:
        self.app = app
        self.watchers: dict[str, set[PusherSocket]] = {}  # watched user id → local sockets
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.app.settings.watchlist_events

    # -- a socket watches ------------------------------------------------------------------

    def watch(self, sock: PusherSocket, user_ids: tuple[str, ...]) -> None:
        self.unwatch(sock)
        sock.watchlist = user_ids
        cluster = self.app.cluster
        for user_id in user_ids:
            local = self.watchers.setdefault(user_id, set())
            if not local and cluster is not None:
                cluster.cluster.hold(topic(self.app.name, watch_topic(user_id)))
            local.add(sock)

    def unwatch(self, sock: PusherSocket) -> None:
        cluster = self.app.cluster
        for user_id in sock.watchlist:
            local = self.watchers.get(user_id)
            if local is None:
                continue
            local.discard(sock)
            if not local:
                del self.watchers[user_id]
                if cluster is not None:
                    cluster.cluster.release(topic(self.app.name, watch_topic(user_id)))
        sock.watchlist = ()

    async def initial(self, sock: PusherSocket) -> None:
        """After signin_success: the watched users online now (their announcements reach
        this node from here on, so none is missed)."""
        if not sock.watchlist:
            return
        cluster = self.app.cluster
        if cluster is not None:
            for user_id in sock.watchlist:
                await cluster.ready(watch_topic(user_id))
        online = await self._online()
        ids = [u for u in sock.watchlist if u in online]
        if ids:
            self.app.send(sock, events_frame("online", ids))

    async def _online(self) -> set[str]:
        cluster = self.app.cluster
        if cluster is not None:
            try:
                members = await cluster.cluster.broker.presence_members(self.app.name, ONLINE)
                return set(members)
            except BrokerUnavailable as exc:
                cluster.outage("watchlist: online users listed from this node", exc)
        return set(self.app.users)

    # -- a user comes and goes --------------------------------------------------------------

    def user_arrived(self, user_id: str) -> Awaitable[None] | None:
        """This node's first socket signed in as ``user_id``: announce them if they are new
        in the whole cluster. What is returned runs before ``signin_success`` is sent."""
        if not self.enabled:
            return None
        cluster = self.app.cluster
        if cluster is None:
            self.announce("online", user_id)
            return None
        return self._arrived(user_id)

    async def _arrived(self, user_id: str) -> None:
        cluster = self.app.cluster
        assert cluster is not None
        try:
            change = await cluster.cluster.presence_join(
                self.app.name, ONLINE, user_id, orjson.dumps({"user_id": user_id})
            )
        except BrokerUnavailable as exc:
            cluster.outage(f"watchlist: {user_id} online on this node only", exc)
            change = Transition.MEMBER_ADDED
        if change is Transition.MEMBER_ADDED:
            self.announce("online", user_id)

    def user_left(self, user_id: str) -> None:
        """This node's last socket of ``user_id`` ended (or signed in as someone else)."""
        if not self.enabled:
            return
        if self.app.cluster is None:
            self.announce("offline", user_id)
            return
        task = asyncio.get_running_loop().create_task(self._left(user_id))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    async def _left(self, user_id: str) -> None:
        cluster = self.app.cluster
        assert cluster is not None
        try:
            change = await cluster.cluster.presence_leave(self.app.name, ONLINE, user_id)
        except BrokerUnavailable as exc:
            cluster.outage(f"watchlist: {user_id} offline on this node only", exc)
            change = Transition.MEMBER_REMOVED
        if change is Transition.MEMBER_REMOVED and user_id not in self.app.users:
            self.announce("offline", user_id)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "watchlist update failed", exc_info=task.exception(), extra={"api": self.app.name}
            )

    def announce(self, name: str, user_id: str) -> None:
        """``online``/``offline`` of ``user_id`` to its watchers here and on every node."""
        frame = events_frame(name, [user_id])
        self.deliver(user_id, frame)
        if self.app.cluster is not None:
            self.app.cluster.publish_soon(watch_topic(user_id), frame)

    def deliver(self, user_id: str, frame: bytes) -> None:
        for sock in list(self.watchers.get(user_id, ())):
            self.app.send(sock, frame)
