"""Watchlist events for signed-in users (issue 17): pusher-js's ``user.watchlist`` API gets
``online``/``offline`` of the users in its user's watchlist, on one node and across nodes
(memory brokers and a real Redis)."""

from __future__ import annotations

import os

import pusher
import pytest

from tests.e2e.pusher_cluster import pusher_nodes, signed_in
from tests.e2e.pusher_js import AuthServer, PusherJs
from tests.e2e.pusher_support import APP_ID, KEY, SECRET, Client, pusher_app, sdk
from tests.redis_support import redis_url

USERS = {"ann": {"id": "1", "name": "Ann", "watchlist": ["2", "3"]}}


async def _watcher(port: int) -> tuple[AuthServer, PusherJs]:
    signer = pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET)
    auth = await AuthServer(signer, USERS).start()
    js = await PusherJs.start(port, KEY, auth.url)
    await js.send(cmd="connect", id="ann")
    socket_id = (await js.wait_for(id="ann", type="connected"))["socket_id"]
    auth.user_for_socket[socket_id] = "ann"
    return auth, js


async def _sign_in(js: PusherJs) -> None:
    await js.send(cmd="signin", id="ann")
    await js.wait_for(id="ann", type="signed_in")


def _watchlist_reports(js: PusherJs) -> list[tuple[str, list[str]]]:
    return [(r["name"], r["user_ids"]) for r in js.seen if r.get("type") == "watchlist"]


async def test_watchlist_on_one_node(start_gateway):
    gw = await start_gateway({"apis": [pusher_app(watchlist_events=True)]})
    carl = await signed_in(gw, "3")  # online before ann signs in
    auth, js = await _watcher(gw.port)
    try:
        await _sign_in(js)
        got = await js.wait_for(id="ann", type="watchlist")
        assert (got["name"], got["user_ids"]) == ("online", ["3"])
        bob = await signed_in(gw, "2")
        got = await js.wait_for(id="ann", type="watchlist")
        assert (got["name"], got["user_ids"]) == ("online", ["2"])
        bob_again = await signed_in(gw, "2")  # a second socket: still the same user online
        stranger = await signed_in(gw, "9")  # not watched
        await bob.close()
        await stranger.close()
        await bob_again.close()
        got = await js.wait_for(id="ann", type="watchlist")
        assert (got["name"], got["user_ids"]) == ("offline", ["2"])
        await carl.close()
        got = await js.wait_for(id="ann", type="watchlist")
        assert (got["name"], got["user_ids"]) == ("offline", ["3"])
        assert _watchlist_reports(js) == []  # nothing else: no repeat, nothing of user 9
    finally:
        await js.stop()
        await auth.stop()


async def test_watchlist_is_off_unless_enabled(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    carl = await signed_in(gw, "3")
    auth, js = await _watcher(gw.port)
    try:
        await _sign_in(js)
        await carl.close()
        probe = await signed_in(gw, "8")  # the server handled everything before this
        await probe.close()
        assert _watchlist_reports(js) == []
    finally:
        await js.stop()
        await auth.stop()


async def test_a_watchlist_over_100_ids_is_refused(start_gateway):
    gw = await start_gateway({"apis": [pusher_app(watchlist_events=True)]})
    c = await Client.connect(gw)
    auth = sdk(gw).authenticate_user(
        c.socket_id, {"id": "1", "watchlist": [str(i) for i in range(101)]}
    )
    await c.send("pusher:signin", auth)
    err = await c.expect("pusher:error")
    assert err["data"] == {"code": 4009, "message": "The watchlist has more than 100 user ids."}


@pytest.mark.parametrize("broker", ["memory", "redis"])
async def test_watchlist_across_nodes(tmp_path, broker):
    if broker == "redis":
        os.environ["SOCKWAY_TEST_REDIS"] = redis_url()  # restored after the test (conftest)
    async with pusher_nodes(tmp_path, 2, watchlist_events=True) as (a, b):
        auth, js = await _watcher(a.port)
        try:
            await _sign_in(js)
            bob_b = await signed_in(b, "2")
            got = await js.wait_for(id="ann", type="watchlist")
            assert (got["name"], got["user_ids"]) == ("online", ["2"])
            bob_a = await signed_in(a, "2")  # the same user on the other node too
            await bob_b.close()  # still online on node a
            carl_b = await signed_in(b, "3")
            got = await js.wait_for(id="ann", type="watchlist")
            assert (got["name"], got["user_ids"]) == ("online", ["3"])
            await bob_a.close()
            got = await js.wait_for(id="ann", type="watchlist")
            assert (got["name"], got["user_ids"]) == ("offline", ["2"])
            await carl_b.close()
            got = await js.wait_for(id="ann", type="watchlist")
            assert (got["name"], got["user_ids"]) == ("offline", ["3"])
            assert _watchlist_reports(js) == []
        finally:
            await js.stop()
            await auth.stop()


async def test_a_dead_nodes_users_go_offline(tmp_path):
    from sockway.brokers.memory import MemoryBroker

    async with pusher_nodes(tmp_path, 2, watchlist_events=True, broker=MemoryBroker) as (a, b):
        auth, js = await _watcher(a.port)
        try:
            await _sign_in(js)
            await signed_in(b, "2")
            got = await js.wait_for(id="ann", type="watchlist")
            assert (got["name"], got["user_ids"]) == ("online", ["2"])
            b.cluster.broker.crash()  # type: ignore[attr-defined]
            got = await js.wait_for(id="ann", type="watchlist", timeout=20)
            assert (got["name"], got["user_ids"]) == ("offline", ["2"])
            await b.stop(grace_s=5)
            assert _watchlist_reports(js) == []  # once, not again when b's socket ends
        finally:
            await js.stop()
            await auth.stop()
