"""Load-generator worker: picows clients (and a minimal HTTP/1.1 keep-alive client) on uvloop.

Started by ``bench/run.py`` in its own process, pinned to the client core. Every mode is bounded
in count and time, exits by itself, and prints exactly one JSON object as its last stdout line.
Modes that hold connections print ``READY {...}`` first and wait for a line on stdin before they
start (``go``) or finish (``done``), so the orchestrator can line processes up.

  subs     hold N subscribers; count frames, latency from the embedded timestamp
  pub      publish M messages over WebSocket (``/pub``, first frame ``PUB``) or HTTP POST
           (``--http-path``), closed loop (<= window unseen by a probe subscriber) or at a rate
  echo     C closed-loop clients: send, wait for the answer, repeat (warm-up, then measure)
  post     C keep-alive HTTP clients POSTing to ``--http-path`` (``{id}`` filled with the ids of
           K WebSocket sinks learnt through a two-way ``whoami`` route), closed loop
  idle     hold N idle connections until told ``done``
  connect  open N connections as fast as ``--concurrency`` allows, then close them

Fan-out message (exactly ``--size`` bytes): ``--marker`` + ``"<seq:010d> <monotonic_ns:019d> "``
+ ``x`` padding; all processes share ``CLOCK_MONOTONIC``, so latency = receive time - stamp.
Front doors that wrap the message (AppSync Events ``data`` frames carry it as a JSON string
inside JSON, Pusher as ``data`` of an event frame) are read by ``--stamp-marker``: the stamp is
found right after the marker anywhere in the frame, and frames without it (acks, keep-alives)
are not counted. ``--publish-kind`` wraps the published message as each API's HTTP publish
expects: ``raw`` (websocket-API ``@channels`` POST), ``appsync`` (``POST /event`` with
``x-api-key``), ``pusher`` (``POST /apps/{id}/events`` signed as the pusher SDKs sign).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from array import array
from typing import Any
from urllib.parse import urlsplit

import uvloop
from httpload import HttpConn, http_conns, http_request, publisher
from picows import WSListener, WSMsgType, ws_connect

TEXT, CLOSE = WSMsgType.TEXT, WSMsgType.CLOSE
now_ns = time.monotonic_ns
SAMPLES = 40_000  # latency samples a worker returns (evenly spaced subsample)


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def ready(**info: Any) -> None:
    sys.stdout.write("READY " + json.dumps(info) + "\n")
    sys.stdout.flush()


async def stdin_line(timeout: float) -> None:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), timeout)


def thin(values: array) -> list[int]:
    if len(values) <= SAMPLES:
        return list(values)
    step = len(values) / SAMPLES
    return [values[int(i * step)] for i in range(SAMPLES)]


class Quiet(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type == CLOSE:
            transport.disconnect()


def headers(a: argparse.Namespace) -> dict[str, str]:
    """``--header 'Name: value'`` (repeatable): extra upgrade request headers."""
    return dict(h.split(": ", 1) for h in a.header or ())


async def open_many(
    factory: Any,
    url: str,
    n: int,
    src: str | None,
    concurrency: int,
    extra_headers: dict[str, str] | None = None,
) -> tuple:
    """Open ``n`` WebSocket connections, ``concurrency`` at a time (3 tries each)."""
    gate = asyncio.Semaphore(concurrency)
    extra: dict[str, Any] = {"local_addr": (src, 0)} if src else {}
    if extra_headers:
        extra["extra_headers"] = extra_headers
    conns: list[tuple[Any, Any]] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with gate:
            for attempt in range(3):
                try:
                    conns.append(
                        await ws_connect(factory, url, websocket_handshake_timeout=30, **extra)
                    )
                    return
                except Exception as exc:
                    if attempt == 2:
                        failed += 1
                        if failed <= 3:
                            print(f"connect failed: {exc!r}", file=sys.stderr)
                    await asyncio.sleep(0.2)

    await asyncio.gather(*(one() for _ in range(n)))
    return conns, failed


def close_all(conns: list[Any]) -> None:
    for c in conns:
        t = c[0] if isinstance(c, tuple) else c
        try:
            t.send_close()
            t.disconnect()
        except Exception:
            pass


# -- modes ------------------------------------------------------------------------------------


async def mode_subs(a: argparse.Namespace) -> None:
    lat = array("q")
    last = [0]
    goal = a.n * a.expect
    done = asyncio.Event()

    marker = a.stamp_marker.encode() if a.stamp_marker else b""
    hellos = [h.encode() for h in a.hello or ()]
    ack = a.ack_marker.encode() if a.ack_marker else b""
    acked = [0]
    all_acked = asyncio.Event()

    class Sub(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: Any) -> None:
            for h in hellos:
                transport.send(TEXT, h)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:  # the hot path: keep lean
            if frame.msg_type == TEXT:
                t = now_ns()
                payload = frame.get_payload_as_bytes()
                if marker:
                    at = payload.find(marker)
                    if at < 0:  # an ack or keep-alive of the protocol, not a message
                        if ack and ack in payload:
                            acked[0] += 1
                            if acked[0] >= a.n:
                                all_acked.set()
                        return
                    at += len(marker) + 11
                    lat.append(t - int(payload[at : at + 19]))
                else:
                    lat.append(t - int(payload[11:30]))
                last[0] = t
                if len(lat) >= goal:
                    done.set()
            elif frame.msg_type == CLOSE:
                transport.disconnect()

    conns, failed = await open_many(Sub, a.url, a.n, a.src_ip, 200, headers(a))
    if ack:  # every subscription confirmed before the publisher starts
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_acked.wait(), 60)
    ready(connected=len(conns), failures=failed, acked=acked[0])
    cpu0 = time.process_time()
    deadline = time.monotonic() + a.max_time
    while not done.is_set() and time.monotonic() < deadline:
        try:
            await asyncio.wait_for(done.wait(), 0.2)
        except TimeoutError:
            if last[0] and (now_ns() - last[0]) / 1e9 > a.quiet:
                break
    cpu = time.process_time() - cpu0
    await asyncio.sleep(a.linger)  # keep the closes out of a CPU window that ends at t_last
    close_all(conns)
    await asyncio.sleep(0.2)
    out(
        {
            "connected": len(conns),
            "failures": failed,
            "received": len(lat),
            "t_last": last[0],
            "cpu_s": cpu,
            "lat_ns": thin(lat),
        }
    )


async def mode_pub(a: argparse.Namespace) -> None:
    seen = [0]
    wake = asyncio.Event()
    errors = [0]

    hellos = [h.encode() for h in a.hello or ()]
    marker = a.marker.encode()
    ack = a.ack_marker.encode() if a.ack_marker else b""
    acked = asyncio.Event()

    class Probe(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: Any) -> None:
            for h in hellos:
                transport.send(TEXT, h)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == TEXT:
                payload = frame.get_payload_as_bytes()
                if marker and marker not in payload:
                    if ack and ack in payload:
                        acked.set()
                    return
                seen[0] += 1
                wake.set()

    extra: dict[str, Any] = {"local_addr": (a.src_ip, 0)} if a.src_ip else {}
    probe, _ = await ws_connect(Probe, a.probe_url, extra_headers=headers(a) or None, **extra)
    if ack:
        await asyncio.wait_for(acked.wait(), 30)
    if a.http_path:
        parts = urlsplit(a.url)
        host = f"{parts.hostname}:{parts.port}"
        make = publisher(a, host)

        def answered(_: HttpConn, status: int) -> None:
            if status != 200 and status >= 0:  # -1: the connection closed (at the end)
                errors[0] += 1

        conns = await http_conns(a.url, a.http_conns, answered, a.src_ip)

        def send(payload: bytes) -> None:
            conn = min(conns, key=lambda c: c.pending)  # least outstanding first
            conn.request(make(payload))

        def finish() -> None:
            for c in conns:
                c.transport.close()
    else:
        pub, _ = await ws_connect(Quiet, a.url, **extra)
        pub.send(TEXT, b"PUB")

        def send(payload: bytes) -> None:
            pub.send(TEXT, payload)

        def finish() -> None:
            close_all([pub])

    await asyncio.sleep(a.settle)
    pad = b"x" * max(0, a.size - 31 - len(marker))
    sent = 0
    stalled = False
    t_first = now_ns()
    deadline = time.monotonic() + a.max_time
    while sent < a.count and time.monotonic() < deadline:
        if a.rate > 0:
            delay = (t_first + int(sent * 1e9 / a.rate) - now_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            while sent - seen[0] >= a.window:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), 10)
                except TimeoutError:
                    stalled = True
                    break
            if stalled:
                break
        send(marker + b"%010d %019d " % (sent, now_ns()) + pad)
        sent += 1
    t_last = now_ns()
    end = time.monotonic() + 10
    while seen[0] < sent and time.monotonic() < end:
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), 0.5)
    finish()
    close_all([probe])
    await asyncio.sleep(0.1)
    out(
        {
            "sent": sent,
            "probe_seen": seen[0],
            "stalled": stalled,
            "http_errors": errors[0],
            "t_first": t_first,
            "t_last": t_last,
        }
    )


async def mode_echo(a: argparse.Namespace) -> None:
    lat = array("q")
    st = {"n": 0, "on": False, "stop": False, "wrong": 0}
    prefix, suffix = a.template.encode().split(b"{}")
    pad = b"x" * max(0, a.size - len(prefix) - len(suffix) - 19)

    class Client(WSListener):  # type: ignore[misc]
        t: Any = None
        sent_at = 0
        sent = b""
        answered = False

        def on_ws_connected(self, transport: Any) -> None:
            self.t = transport

        def fire(self) -> None:
            self.sent_at = now_ns()
            self.sent = prefix + b"%019d" % self.sent_at + pad + suffix
            self.t.send(TEXT, self.sent)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == TEXT:
                self.answered = True
                if st["on"]:
                    lat.append(now_ns() - self.sent_at)
                    st["n"] += 1
                    # Every system echoes the message unchanged (an error frame is not an echo).
                    st["wrong"] += frame.get_payload_as_bytes() != self.sent
                if not st["stop"]:
                    self.fire()
            elif frame.msg_type == CLOSE:
                transport.disconnect()

    conns, failed = await open_many(Client, a.url, a.n, a.src_ip, 100)
    for _, client in conns:
        client.fire()
    await asyncio.sleep(a.warmup)
    # Measure only once every client has been answered: with `runtime: process` each client
    # has its own worker, whose cold start (spawn + import) on the one pinned core took longer
    # than any fixed warm-up when the VM ran slow (the row fell to 33 req/s in one run).
    waited = 0.0
    while any(client.sent_at and not client.answered for _, client in conns) and waited < 120:
        await asyncio.sleep(0.1)
        waited += 0.1
    st["on"] = True
    t0 = now_ns()
    await asyncio.sleep(a.duration)
    st["on"] = False
    t1 = now_ns()
    st["stop"] = True
    await asyncio.sleep(0.2)
    close_all(conns)
    await asyncio.sleep(0.2)
    out(
        {
            "connected": len(conns),
            "failures": failed,
            "count": st["n"],
            "wrong": st["wrong"],
            "t0": t0,
            "t1": t1,
            "lat_ns": thin(lat),
        }
    )


async def mode_post(a: argparse.Namespace) -> None:
    """Closed-loop POSTs over C keep-alive connections, each with one request outstanding."""
    ids: list[str] = []
    got = [0]
    id_wait = asyncio.Event()

    class Sink(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == TEXT:
                if len(ids) < a.sinks and frame.get_payload_as_bytes().startswith(b"id:"):
                    ids.append(frame.get_payload_as_bytes()[3:].decode())
                    if len(ids) == a.sinks:
                        id_wait.set()
                else:
                    got[0] += 1
            elif frame.msg_type == CLOSE:
                transport.disconnect()

    sinks: list[Any] = []
    if a.ws_url:
        sinks, _ = await open_many(Sink, a.ws_url, a.sinks, a.src_ip, 50)
        for t, _ in sinks:
            t.send(TEXT, b'{"action":"whoami"}')
        await asyncio.wait_for(id_wait.wait(), 10)
    else:
        ids = ["x"] * a.sinks
    parts = urlsplit(a.url)
    host = f"{parts.hostname}:{parts.port}"
    body = b"p" * a.size
    reqs = [http_request(host, a.http_path.replace("{id}", i), body) for i in ids]
    st = {"n": 0, "bad": 0, "on": False, "stop": False, "k": 0}
    lat = array("q")
    sent_at: dict[int, int] = {}

    def fire(conn: HttpConn) -> None:
        st["k"] += 1
        sent_at[id(conn)] = now_ns()
        conn.request(reqs[st["k"] % len(reqs)])

    def answered(conn: HttpConn, status: int) -> None:
        if status < 0:
            return
        if st["on"]:
            lat.append(now_ns() - sent_at[id(conn)])
            st["n"] += 1
            if status != 200:
                st["bad"] += 1
        if not st["stop"]:
            fire(conn)

    conns = await http_conns(a.url, a.n, answered, a.src_ip)
    for c in conns:
        fire(c)
    await asyncio.sleep(a.warmup)
    st["on"] = True
    t0 = now_ns()
    await asyncio.sleep(a.duration)
    st["on"] = False
    t1 = now_ns()
    st["stop"] = True
    await asyncio.sleep(0.3)
    for c in conns:
        c.transport.close()
    close_all(sinks)
    await asyncio.sleep(0.2)
    out(
        {
            "count": st["n"],
            "non_200": st["bad"],
            "delivered_to_sinks": got[0],
            "t0": t0,
            "t1": t1,
            "lat_ns": thin(lat),
        }
    )


async def mode_idle(a: argparse.Namespace) -> None:
    t0 = time.monotonic()
    conns, failed = await open_many(Quiet, a.url, a.n, a.src_ip, 200)
    ready(connected=len(conns), failures=failed, connect_s=time.monotonic() - t0)
    await stdin_line(a.hold)
    close_all(conns)
    await asyncio.sleep(0.5)
    out({"connected": len(conns), "failures": failed})


async def mode_connect(a: argparse.Namespace) -> None:
    ready()
    await stdin_line(30)  # "go": every connect process starts together
    t0 = now_ns()
    conns, failed = await open_many(Quiet, a.url, a.n, a.src_ip, a.concurrency)
    t1 = now_ns()
    close_all(conns)
    await asyncio.sleep(0.3)
    out({"connected": len(conns), "failures": failed, "t0": t0, "t1": t1})


MODES = {
    "subs": mode_subs,
    "pub": mode_pub,
    "echo": mode_echo,
    "post": mode_post,
    "idle": mode_idle,
    "connect": mode_connect,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=sorted(MODES))
    ap.add_argument("--url", required=True)
    ap.add_argument("--probe-url", help="pub: where the probe subscribes")
    ap.add_argument("--ws-url", help="post: WebSocket URL of the sinks (none: no sinks)")
    ap.add_argument("--http-path", help="pub/post: POST to this path instead of /pub")
    ap.add_argument("--http-conns", type=int, default=2)
    ap.add_argument("--sinks", type=int, default=10)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--expect", type=int, default=100)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--template", default="{}", help="echo: message text, {} = stamp + padding")
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--settle", type=float, default=0.3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--quiet", type=float, default=5.0)
    ap.add_argument("--max-time", type=float, default=120.0)
    ap.add_argument("--hold", type=float, default=120.0)
    ap.add_argument("--linger", type=float, default=0.0, help="subs: wait before closing")
    ap.add_argument("--src-ip")
    ap.add_argument(
        "--hello", action="append", help="subs/pub probe: text frame sent once connected (repeat)"
    )
    ap.add_argument("--header", action="append", help="subs/pub probe: 'Name: value' (repeat)")
    ap.add_argument("--stamp-marker", help="subs: the message starts right after these bytes")
    ap.add_argument("--ack-marker", help="subs/pub probe: wait for a frame with this per socket")
    ap.add_argument("--marker", default="", help="pub: text the published message starts with")
    ap.add_argument("--publish-kind", choices=("raw", "appsync", "pusher"), default="raw")
    ap.add_argument("--channel", default="fan", help="pub: channel of appsync/pusher publishes")
    ap.add_argument("--api-key", default="", help="pub appsync: x-api-key")
    ap.add_argument("--app-key", default="", help="pub pusher: auth_key")
    ap.add_argument("--secret", default="", help="pub pusher: the app secret")
    a = ap.parse_args()
    uvloop.run(MODES[a.mode](a))


if __name__ == "__main__":
    main()
