"""The churn harness with a loss ledger (issue 13 "Standing tests"); ``tests/e2e/test_churn.py``
runs it briefly, ``bench/churn_soak.py`` for longer.

While one publisher per front door broadcasts numbered messages over HTTP (``@channels``
POST, AppSync ``POST /event``, a Pusher trigger) to the channel ``churn``, clients of every
door join, leave, reset (TCP RST) and stall (stop reading) at random, on random nodes. Every
message's flight is recorded (sent, answered, status), every client's membership (subscribed,
ended) and what it received. The ledger then holds the gateway to its guarantee
(docs/brokers.md "Delivery guarantee"):

- a message answered 2xx reached, exactly once and in publication order, every client that
  was subscribed before it was sent and still connected when it had arrived (bounded at
  ``DELIVERY_MARGIN_S`` after the answer);
- a message answered 503 reached nobody; nothing reached anybody twice;
- every Pusher presence change was announced once to a member that stayed (``member_added``
  then ``member_removed`` per user) and sent once as a webhook, and the channels were occupied
  and vacated once.

Faults (``Chaos``) are run between churn: a Redis restart (churn pauses while Redis is down:
during an outage presence is documented to fall back to each node's own view) and a SIGKILL
of one node (its clients count as ended at the kill; churn on it stops a second before, so
its webhooks are out). The randomness is seeded; the seed is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pusher
import websockets
import yaml
from aiohttp import web

from tests.e2e.appsync_support import API_KEY, events_api, header_subprotocol
from tests.e2e.pusher_support import APP_ID, KEY, SECRET, pusher_app

DOORS = ("ws", "events", "pusher")
PRESENCE = "presence-churn"
PAD = "p" * 200
STEADY_PER_DOOR = 2
# A message's flight ends when the client has read it: a client that leaves or resets right
# after the answer may not have (its socket drops what it did not read). A message is due to a
# client that stayed connected this long after the publisher's answer.
DELIVERY_MARGIN_S = 0.5
HANDLERS = """
def whoami(event, context):
    return {"statusCode": 200, "body": event["requestContext"]["connectionId"]}
"""


def now() -> float:
    return time.monotonic()


def config(
    tmp_path: Path,
    hook_url: str,
    redis: str | None,
    prefix: str = "churn",
    node_ttl_s: float = 2.0,
) -> Path:
    """One YAML for every node: the three front doors, webhooks to ``hook_url``. A node
    whose heartbeat lapses for ``node_ttl_s`` is dead by the liveness rule (its members are
    removed, then added again when it comes back): on a loaded machine keep it well above the
    event loop's longest stall."""
    handlers = tmp_path / "handlers"
    handlers.mkdir(exist_ok=True)
    (handlers / "churnws.py").write_text(HANDLERS)
    app = pusher_app(
        webhooks=[
            {
                "url": hook_url,
                "event_types": [
                    "channel_occupied",
                    "channel_vacated",
                    "member_added",
                    "member_removed",
                ],
            }
        ],
        webhook_delivery={
            "initial_backoff_s": 0.05,
            "max_backoff_s": 0.2,
            "retry_window_s": 10,
            "timeout_s": 2,
        },
    )
    settings: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "state_dir": str(tmp_path / "state"),
        "log_level": "WARNING",
        "apis": [
            {
                "name": "t",
                "type": "websocket",
                "stage": "dev",
                "code_dir": str(handlers),
                "routes": {"whoami": {"handler": "churnws.whoami", "route_response": True}},
            },
            app,
            events_api(),
        ],
    }
    if redis is not None:
        settings["broker"] = {
            "url": redis,
            "key_prefix": prefix,
            "heartbeat_s": node_ttl_s / 5,
            "node_ttl_s": node_ttl_s,
            "unsubscribe_grace_s": 0.2,
        }
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


async def broker_state(port: int) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/health") as r:
        return str((await r.json())["broker"])


class Hooks:
    """The webhook receiver: every event, in arrival order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.events.extend(json.loads(await request.read())["events"])
        return web.Response()

    async def start(self) -> Hooks:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class Flight:
    door: str
    n: int
    sent: float
    answered: float
    status: int  # 0: unknown (the node died under it): neither due nor refused
    node: int


@dataclass(eq=False)
class Member:
    """One client of one door on one node."""

    door: str
    name: str
    node: int
    steady: bool = False
    ws: Any = None
    subscribed: float | None = None
    ended: float | None = None  # we left / reset it (or the node was killed)
    exempt_after: float | None = None  # cut off while stalled, or its node was killed
    lost: float | None = None  # the server closed it
    present: bool = False  # got the presence subscription_succeeded (pusher)
    got: list[int] = field(default_factory=list)
    stalled: asyncio.Event = field(default_factory=asyncio.Event)  # set: reading
    stalls: list[tuple[float, float]] = field(default_factory=list)
    presence_seen: list[tuple[str, str]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.stalled.set()


class Churn:
    """One run of the harness over live nodes (``ports()``: the nodes' ports by index,
    ``alive()``: the indexes churn and publishers may use now)."""

    def __init__(
        self,
        seed: int,
        ports: Callable[[], list[int]],
        alive: Callable[[], list[int]],
        hooks: Hooks,
    ) -> None:
        self.rng = random.Random(seed)
        self.ports = ports
        self.alive = alive
        self.hooks = hooks
        self.flights: list[Flight] = []
        self.members: list[Member] = []
        self.paused = asyncio.Event()  # set: churn runs
        self.paused.set()
        self.publishing = asyncio.Event()  # set: publishers run
        self.publishing.set()
        self.in_flight = 0
        self.quiet_nodes: set[int] = set()  # no churn there (about to be killed)
        self.stop = asyncio.Event()
        self.events = {"joins": 0, "leaves": 0, "resets": 0, "stalls": 0}
        self.errors: list[str] = []
        self.http: aiohttp.ClientSession | None = None
        self._sdk: dict[int, pusher.Pusher] = {}
        self._count = 0
        self.observer: Member | None = None

    # -- clients ---------------------------------------------------------------------------

    def _port(self, node: int) -> int:
        return self.ports()[node]

    async def join(self, door: str, node: int, steady: bool = False) -> Member:
        self._count += 1
        m = Member(door, f"{door}-{self._count}", node, steady)
        self.members.append(m)
        try:
            await asyncio.wait_for(getattr(self, f"_join_{door}")(m), 10)
        except Exception as exc:
            if node in self.alive() and node not in self.quiet_nodes and self.paused.is_set():
                self.errors.append(f"{m.name} on node {node}: join failed: {exc!r}")
            m.ended = m.ended or now()
            if m.ws is not None:
                await m.ws.close()
            return m
        self.events["joins"] += 1
        m.reader = asyncio.get_running_loop().create_task(self._read(m))
        return m

    async def _join_ws(self, m: Member) -> None:
        port = self._port(m.node)
        m.ws = await websockets.connect(f"ws://127.0.0.1:{port}/dev", max_queue=None)
        await m.ws.send('{"action":"whoami"}')
        conn_id = await m.ws.recv()
        assert self.http is not None
        url = f"http://127.0.0.1:{port}/dev/@connections/{conn_id}/channels/churn"
        async with self.http.put(url) as r:
            assert r.status == 204, r.status
        m.subscribed = now()

    async def _join_events(self, m: Member) -> None:
        host = f"127.0.0.1:{self._port(m.node)}"
        auth = {"host": host, "x-api-key": API_KEY}
        m.ws = await websockets.connect(
            f"ws://{host}/event/realtime",
            subprotocols=["aws-appsync-event-ws", header_subprotocol(auth)],  # type: ignore[list-item]
            max_queue=None,
        )
        await m.ws.send(json.dumps({"type": "connection_init"}))
        await self._expect(m, lambda f: f.get("type") == "connection_ack")
        subscribe = {
            "type": "subscribe",
            "id": "s",
            "channel": "/default/churn",
            "authorization": {"x-api-key": API_KEY},
        }
        await m.ws.send(json.dumps(subscribe))
        await self._expect(m, lambda f: f.get("type") == "subscribe_success")
        m.subscribed = now()

    async def _join_pusher(self, m: Member) -> None:
        port = self._port(m.node)
        m.ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/app/{KEY}?protocol=7", max_queue=None
        )
        hello = await self._expect(m, lambda f: f["event"] == "pusher:connection_established")
        socket_id = json.loads(hello["data"])["socket_id"]
        await m.ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": "churn"}}))
        await self._expect(m, lambda f: f["event"] == "pusher_internal:subscription_succeeded")
        m.subscribed = now()
        auth = self._signer(port).authenticate(PRESENCE, socket_id, {"user_id": m.name})
        await m.ws.send(
            json.dumps({"event": "pusher:subscribe", "data": {"channel": PRESENCE, **auth}})
        )

        def succeeded(f: dict[str, Any]) -> bool:
            return f["event"] == "pusher_internal:subscription_succeeded" and (
                f.get("channel") == PRESENCE
            )

        await self._expect(m, succeeded)
        m.present = True

    async def _expect(self, m: Member, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The next frame that matches; the ones before it are taken as they come."""
        while True:
            frame = json.loads(await m.ws.recv())
            if match(frame):
                return frame  # type: ignore[no-any-return]
            self._take(m, frame)

    async def _read(self, m: Member) -> None:
        try:
            while True:
                await m.stalled.wait()
                self._take(m, json.loads(await m.ws.recv()))
        except websockets.ConnectionClosed:
            if m.ended is None:
                m.lost = now()

    def _take(self, m: Member, frame: dict[str, Any]) -> None:
        n: int | None = None
        if m.door == "ws":
            n = frame.get("n")
        elif m.door == "events":
            if frame.get("type") == "data":
                n = json.loads(frame["event"])["n"]
        else:
            event = frame.get("event")
            if event == "tick":
                n = json.loads(frame["data"])["n"]
            elif event in ("pusher_internal:member_added", "pusher_internal:member_removed"):
                m.presence_seen.append(
                    (event.rsplit(":", 1)[1], json.loads(frame["data"])["user_id"])
                )
        if n is not None:
            m.got.append(n)

    def _signer(self, port: int) -> pusher.Pusher:
        signer = self._sdk.get(port)
        if signer is None:
            signer = pusher.Pusher(
                app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1", port=port, ssl=False
            )
            self._sdk[port] = signer
        return signer

    # -- churn -----------------------------------------------------------------------------

    async def churn(self, clients_per_door: int) -> None:
        """Random joins, leaves, resets and stalls until ``stop``."""
        for door in DOORS:
            for _ in range(clients_per_door):
                await self.join(door, self.rng.choice(self._churnable()))
        while not self.stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.02, 0.08))
            await self.paused.wait()
            if self.stop.is_set():
                break
            live = [
                m
                for m in self.members
                if m.ended is None
                and m.lost is None
                and not m.steady
                and m.subscribed
                and m.node not in self.quiet_nodes
                and m.node in self.alive()
            ]
            action = self.rng.choice(["join", "join", "leave", "reset", "stall"])
            if action == "join" or len(live) < 3:
                await self.join(self.rng.choice(DOORS), self.rng.choice(self._churnable()))
                continue
            m = self.rng.choice(live)
            if action == "leave":
                self.events["leaves"] += 1
                m.ended = now()
                await m.ws.close()
            elif action == "reset":
                self.events["resets"] += 1
                m.ended = now()
                reset(m.ws)
            elif m.stalled.is_set():
                self.events["stalls"] += 1
                asyncio.get_running_loop().create_task(self._stall(m, self.rng.uniform(0.2, 1.0)))

    def _churnable(self) -> list[int]:
        nodes = [n for n in self.alive() if n not in self.quiet_nodes]
        return nodes or self.alive()

    async def _stall(self, m: Member, seconds: float) -> None:
        start = now()
        m.stalled.clear()
        await asyncio.sleep(seconds)
        m.stalled.set()
        m.stalls.append((start, now()))

    # -- faults ----------------------------------------------------------------------------

    async def restart_redis(self, redis: Any, ports: list[int], down_s: float = 0.5) -> None:
        """Stop Redis (churn paused: presence falls back to each node's own view during an
        outage, documented), start it again empty, resume once every node is back."""
        self.paused.clear()
        # Nothing in flight as Redis dies: a publication Redis queued for another node as it
        # stops is lost, and pub/sub cannot tell the publisher (docs/brokers.md); publishing
        # goes on at once while Redis is down (every answer must then be a 503).
        self.publishing.clear()
        while self.in_flight:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        redis.stop()
        self.publishing.set()
        for port in ports:
            while await broker_state(port) != "unreachable":
                await asyncio.sleep(0.05)
        await asyncio.sleep(down_s)
        redis.start()
        for port in ports:
            while await broker_state(port) != "connected":
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        self.paused.set()
        self.events["redis_restarts"] = self.events.get("redis_restarts", 0) + 1

    async def kill(self, node: int, process: Any, killed: set[int]) -> None:
        """SIGKILL ``node``: churn on it stops a second before (its last webhooks go out);
        its clients count as ended at the kill (what was still in its socket buffers may be
        lost with the process)."""
        self.quiet_nodes.add(node)
        await asyncio.sleep(1.0)
        kill_at = now()
        killed.add(node)
        await process.signal(signal.SIGKILL)
        for m in self.members:
            if m.node == node and m.ended is None:
                m.exempt_after = kill_at - DELIVERY_MARGIN_S
                m.ended = kill_at
        self.events["kills"] = self.events.get("kills", 0) + 1

    # -- publishers ------------------------------------------------------------------------

    async def publish(self, door: str) -> None:
        n = 0
        while not self.stop.is_set():
            await self.publishing.wait()
            node = self.rng.choice(self.alive())
            port = self._port(node)
            sent = now()
            self.in_flight += 1
            try:
                status = await asyncio.wait_for(getattr(self, f"_publish_{door}")(port, n), 10)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if node in self.alive():
                    self.errors.append(f"{door} publication {n} via node {node}: {exc!r}")
                status = 0  # unknown: the node died under it
            finally:
                self.in_flight -= 1
            self.flights.append(Flight(door, n, sent, now(), status, node))
            if status not in (0, 200, 503):
                self.errors.append(f"{door} publication {n}: answered {status}")
            n += 1
            await asyncio.sleep(0.01)

    async def _publish_ws(self, port: int, n: int) -> int:
        assert self.http is not None
        body = json.dumps({"n": n, "pad": PAD}).encode()
        async with self.http.post(f"http://127.0.0.1:{port}/dev/@channels/churn", data=body) as r:
            await r.read()
            return r.status

    async def _publish_events(self, port: int, n: int) -> int:
        assert self.http is not None
        body = {"channel": "/default/churn", "events": [json.dumps({"n": n, "pad": PAD})]}
        async with self.http.post(
            f"http://127.0.0.1:{port}/event", json=body, headers={"x-api-key": API_KEY}
        ) as r:
            await r.read()
            return r.status

    async def _publish_pusher(self, port: int, n: int) -> int:
        """The real SDK signs the request (``make_request``); it is sent without a thread."""
        assert self.http is not None
        client = self._signer(port)._pusher_client  # type: ignore[attr-defined]
        request = client.trigger.make_request(["churn"], "tick", {"n": n, "pad": PAD})
        async with self.http.post(
            f"http://127.0.0.1:{port}{request.signed_path}",
            data=request.body,
            headers={"Content-Type": "application/json"},
        ) as r:
            await r.read()
            return r.status

    # -- the ledger ------------------------------------------------------------------------

    def due(self, m: Member) -> set[int]:
        """What ``m`` must have got, per the guarantee (publication numbers of its door)."""
        if m.subscribed is None:
            return set()
        end = m.ended - DELIVERY_MARGIN_S if m.ended is not None else float("inf")
        if m.exempt_after is not None:
            end = min(end, m.exempt_after)
        return {
            f.n
            for f in self.flights
            if f.door == m.door and f.status == 200 and f.sent >= m.subscribed and f.answered <= end
        }

    def check(self) -> dict[str, int]:
        """Every broken promise, as text in ``errors``; the figures of the run."""
        refused = {(f.door, f.n) for f in self.flights if f.status not in (0, 200)}
        flights = {(f.door, f.n): f for f in self.flights}
        t0 = min((f.sent for f in self.flights), default=0.0)
        lost = duplicated = 0
        for m in self.members:
            if m.lost is not None and m.exempt_after is None:
                cut = any(a <= m.lost <= b + 3 for a, b in m.stalls) or not m.stalled.is_set()
                if cut:
                    m.exempt_after = min((a for a, _ in m.stalls), default=m.lost)
                else:
                    self.errors.append(f"{m.name}: closed by the server while reading")
                    m.exempt_after = m.lost
            seen = Counter(m.got)
            dups = [n for n, c in seen.items() if c > 1]
            duplicated += len(dups)
            if dups:
                self.errors.append(f"{m.name}: got {dups[:5]} twice")
            if m.got != sorted(m.got):
                self.errors.append(f"{m.name}: out of order")
            wrong = sorted(n for n in seen if (m.door, n) in refused)
            if wrong:
                self.errors.append(f"{m.name}: got {wrong[:5]}, answered 503 (or unknown)")
            missing = sorted(self.due(m) - set(seen))
            lost += len(missing)
            if missing:
                f = flights[(m.door, missing[0])]
                self.errors.append(
                    f"{m.name} (node {m.node}, subscribed {(m.subscribed or 0) - t0:.3f}, "
                    f"ended {(m.ended or 0) - t0:.3f}, stalls {m.stalls}, lost {m.lost}): "
                    f"missed {len(missing)}: {missing[:5]}; the first sent {f.sent - t0:.3f} "
                    f"via node {f.node}, answered {f.answered - t0:.3f}; got {len(m.got)}, "
                    f"last {m.got[-3:]}"
                )
        return {
            "messages": sum(f.status == 200 for f in self.flights),
            "refused": len(refused),
            "unknown": sum(f.status == 0 for f in self.flights),
            "deliveries_due": sum(len(self.due(m)) for m in self.members),
            "lost": lost,
            "duplicated": duplicated,
            **self.events,
        }

    def check_presence(self) -> None:
        """Each user present once: one member_added and one member_removed, in this order,
        to the observer and as webhooks; the channels occupied and vacated once."""
        observer = self.observer
        assert observer is not None
        users = [m.name for m in self.members if m.present and m is not observer]
        by_user: dict[str, list[str]] = {}
        for kind, user in observer.presence_seen:
            by_user.setdefault(str(user), []).append(kind)
        hooks: dict[str, list[str]] = {}
        for e in self.hooks.events:
            if e["name"] in ("member_added", "member_removed") and e["channel"] == PRESENCE:
                hooks.setdefault(e["user_id"], []).append(e["name"])
        for user in [*users, observer.name]:
            if user != observer.name and by_user.get(user) != ["member_added", "member_removed"]:
                self.errors.append(f"observer saw {user}: {by_user.get(user)}")
            if hooks.get(user) != ["member_added", "member_removed"]:
                self.errors.append(f"webhooks of {user}: {hooks.get(user)}")
        extra = set(hooks) - {*users, observer.name}
        if extra:
            self.errors.append(f"webhooks of users never present: {sorted(extra)[:5]}")
        for channel in (PRESENCE, "churn"):
            names = [
                e["name"]
                for e in self.hooks.events
                if e["channel"] == channel and e["name"].startswith("channel_")
            ]
            if names != ["channel_occupied", "channel_vacated"]:
                self.errors.append(f"occupancy webhooks of {channel}: {names}")

    def presence_done(self) -> bool:
        removed = sum(
            e["name"] == "member_removed" and e["channel"] == PRESENCE for e in self.hooks.events
        )
        vacated = sum(e["name"] == "channel_vacated" for e in self.hooks.events)
        return removed >= sum(m.present for m in self.members) and vacated >= 2

    async def run(
        self, seconds: float, clients_per_door: int, chaos: Callable[[], Any] | None
    ) -> None:
        """Steady members and the observer, then churn and publishers for ``seconds`` (with
        ``chaos`` alongside), then every client still connected leaves."""
        async with aiohttp.ClientSession() as self.http:
            self.observer = await self.join("pusher", 0, steady=True)
            for door in DOORS:
                for i in range(STEADY_PER_DOOR):
                    await self.join(door, self.alive()[i % len(self.alive())], steady=True)
            tasks = [asyncio.get_running_loop().create_task(self.publish(d)) for d in DOORS]
            tasks.append(asyncio.get_running_loop().create_task(self.churn(clients_per_door)))
            if chaos is not None:
                tasks.append(asyncio.get_running_loop().create_task(chaos()))
            await asyncio.sleep(seconds)
            self.stop.set()
            self.paused.set()
            self.publishing.set()
            await asyncio.gather(*tasks)
            # Everything due is read (a stalled reader catches up), then everybody leaves.
            deadline = now() + 10
            open_ = [m for m in self.members if m.ended is None and m.lost is None and m.ws]
            while now() < deadline and any(not self.due(m) <= set(m.got) for m in open_):
                await asyncio.sleep(0.05)
            end = now()
            for m in open_:
                if m is not self.observer:
                    m.ended = end
                    await m.ws.close()
            await asyncio.sleep(0.5)  # the observer sees the last member_removed
            assert self.observer.ws is not None
            self.observer.ended = end
            await self.observer.ws.close()
            deadline = now() + 15
            while now() < deadline and not self.presence_done():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # a late duplicate would show now
            for m in self.members:
                if m.reader is not None:
                    m.reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await m.reader


def reset(ws: Any) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed client does."""
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()
