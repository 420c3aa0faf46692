"""RFC 6455 conformance of every front door on both transports (issue 13 item 10).

The case families of the Autobahn testsuite's fuzzingclient, written with a raw client
(``tests/e2e/rawws.py``) so they run against all three doors — Autobahn itself needs an echo
server, which only the websocket door is (``test_autobahn.py`` runs it there). Each test opens
one gateway and walks every case on one door and transport; a case is one fresh connection.
A case fails the test when the server's answer differs: the expected close code (1002 protocol
error, 1007 invalid UTF-8), the pong, or the round trip that proves the connection still works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import StartGateway
from tests.e2e.conformance_support import (
    DOORS,
    TRANSPORTS,
    conformance_apis,
    open_door,
    round_trip,
)
from tests.e2e.rawws import RawClient

TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


# name → (frames to send, expected close code). Every frame is (opcode, payload, fin, rsv).
Frames = list[tuple[int, bytes, bool, int]]
VIOLATIONS: dict[str, tuple[Frames, int]] = {
    # 3.*: reserved bits set although no extension was negotiated (§5.2)
    **{
        f"3 rsv={rsv} {name}": ([(op, b"x", True, rsv)], 1002)
        for rsv in range(1, 8)
        for op, name in ((TEXT, "text"), (BINARY, "binary"), (PING, "ping"))
    },
    "3 rsv=1 close": ([(CLOSE, close_payload(1000), True, 4)], 1002),
    # 4.*: reserved opcodes (§5.2)
    **{f"4 opcode={op}": ([(op, b"", True, 0)], 1002) for op in (3, 4, 5, 6, 7)},
    **{f"4 opcode={op}": ([(op, b"x", True, 0)], 1002) for op in (11, 12, 13, 14, 15)},
    # 5.*: fragmentation (§5.4)
    "5 continuation without a start": ([(CONT, b"x", True, 0)], 1002),
    "5 text inside a fragmented text": ([(TEXT, b"a", False, 0), (TEXT, b"b", True, 0)], 1002),
    "5 binary inside a fragmented text": (
        [(TEXT, b"a", False, 0), (BINARY, b"b", True, 0)],
        1002,
    ),
    "5 fragmented ping": ([(PING, b"x", False, 0), (CONT, b"y", True, 0)], 1002),
    "5 fragmented close": ([(CLOSE, close_payload(1000), False, 0)], 1002),
    # 2.*: control frames are at most 125 bytes (§5.5)
    "2 ping of 126 bytes": ([(PING, b"x" * 126, True, 0)], 1002),
    # 6.*: text that is not UTF-8 (§8.1)
    "6 invalid utf-8": (
        [(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", True, 0)],
        1007,
    ),
    "6 invalid utf-8 in fragments": ([(TEXT, b"\xce", False, 0), (CONT, b"\xff", True, 0)], 1007),
    "6 surrogate": ([(TEXT, b"\xed\xa0\x80", True, 0)], 1007),
    "6 overlong": ([(TEXT, b"\xc0\xaf", True, 0)], 1007),
    "6 above U+10FFFF": ([(TEXT, b"\xf4\x90\x80\x80", True, 0)], 1007),
    # 7.*: close codes a client may not send (§7.4), and malformed close frames
    **{
        f"7 close code {code}": ([(CLOSE, close_payload(code), True, 0)], 1002)
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)
    },
    "7 close with 1 byte": ([(CLOSE, b"\x03", True, 0)], 1002),
    "7 close reason not utf-8": ([(CLOSE, close_payload(1000, b"\xff\xfe"), True, 0)], 1007),
}

# Close codes a client may send: answered with a normal close (1000) or the same code.
VALID_CLOSES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]


async def _expect_close(client: RawClient, expected: int) -> str | None:
    try:
        code = await client.read_close(5)
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
        return f"no close frame ({type(exc).__name__})"
    return None if code == expected else f"closed with {code}, expected {expected}"


async def _ping_pong(client: RawClient, door: str) -> str | None:
    for payload in (b"", b"hello", bytes(range(125))):
        client.send_frame(PING, payload)
        while True:
            opcode, data = await asyncio.wait_for(client.read_frame(), 5)
            if opcode == PONG:
                break
            if opcode == CLOSE:
                return f"closed instead of pong: {data!r}"
        if data != payload:
            return f"pong {data!r} for ping {payload!r}"
    client.send_frame(PONG, b"unsolicited")  # §5.5.3: may be sent; no answer expected
    return None if await round_trip(client, door) else "no answer after an unsolicited pong"


async def _fragmented_round_trip(client: RawClient, door: str) -> str | None:
    """A message in three fragments with a ping between them (§5.4: control frames may be
    injected), split inside a multi-byte UTF-8 character."""
    from tests.e2e.conformance_support import is_probe_answer, probe_message

    text = "κόσμε" if door == "websocket" else "probe"
    message = probe_message(door, text)
    cut = len(message) // 2 + (
        1 if door == "websocket" else 0
    )  # a fragment boundary inside a character
    client.send_frame(TEXT, message[:cut], fin=False)
    client.send_frame(PING, b"between")
    client.send_frame(CONT, message[cut : cut + 1], fin=False)
    client.send_frame(CONT, message[cut + 1 :], fin=True)
    answers: list[bytes] = []
    pong = False
    while not answers:
        opcode, data = await asyncio.wait_for(client.read_frame(), 5)
        if opcode == PONG:
            pong = data == b"between"
        elif opcode in (TEXT, BINARY) and data != b'{"type":"ka"}':
            answers.append(data)
        elif opcode == CLOSE:
            return f"closed: {data!r}"
    if not pong:
        return "the ping between fragments was not answered first"
    return None if is_probe_answer(door, answers[0], text) else f"answer {answers[0]!r}"


async def _unmasked(client: RawClient, door: str) -> str | None:
    client.send_frame(TEXT, b"x", masked=False)
    return await _expect_close(client, 1002)


async def _data_after_close_is_ignored(client: RawClient, door: str) -> str | None:
    client.send_frame(CLOSE, close_payload(1000))
    client.send_frame(TEXT, b"after close")
    return await _expect_close(client, 1000)


async def _run_case(
    port: int, door: str, via: str, case: Callable[..., Awaitable[str | None]]
) -> str | None:
    client = await open_door(port, door, via)
    try:
        return await case(client, door)
    finally:
        client.close()


def _violation(frames: Frames, expected: int) -> Callable[[RawClient, str], Awaitable[str | None]]:
    async def case(client: RawClient, door: str) -> str | None:
        for opcode, payload, fin, rsv in frames:
            client.send_frame(opcode, payload, fin=fin, rsv=rsv)
        return await _expect_close(client, expected)

    return case


def _valid_close(code: int) -> Callable[[RawClient, str], Awaitable[str | None]]:
    async def case(client: RawClient, door: str) -> str | None:
        client.send_frame(CLOSE, close_payload(code, b"bye"))
        try:
            answer = await client.read_close(5)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            return f"no close frame ({type(exc).__name__})"
        return None if answer in (1000, code) else f"answered {answer}"

    return case


async def _empty_close(client: RawClient, door: str) -> str | None:
    client.send_frame(CLOSE, b"")
    answer = await client.read_close(5)
    return None if answer in (1000, None) else f"answered {answer}"


def all_cases() -> dict[str, Callable[[RawClient, str], Awaitable[str | None]]]:
    cases: dict[str, Callable[[RawClient, str], Awaitable[str | None]]] = {
        "1 round trip": lambda c, d: _ok(round_trip(c, d)),
        "2 ping / pong": _ping_pong,
        "5 fragmented with a ping between": _fragmented_round_trip,
        "unmasked client frame": _unmasked,
        "7 data after close is ignored": _data_after_close_is_ignored,
        "7 close without a code": _empty_close,
    }
    cases.update({name: _violation(*spec) for name, spec in VIOLATIONS.items()})
    cases.update({f"7 close code {code} (valid)": _valid_close(code) for code in VALID_CLOSES})
    return cases


async def _ok(answered: Awaitable[bool]) -> str | None:
    return None if await answered else "wrong answer"


@pytest.mark.parametrize("via", TRANSPORTS)
@pytest.mark.parametrize("door", DOORS)
async def test_rfc6455_cases(
    start_gateway: StartGateway, tmp_path: Path, door: str, via: str
) -> None:
    gw = await start_gateway({"apis": conformance_apis(tmp_path)})
    failures = {}
    cases = all_cases()
    for name, case in cases.items():
        outcome = await _run_case(gw.port, door, via, case)
        if outcome is not None:
            failures[name] = outcome
    assert not failures, f"{len(failures)} of {len(cases)} cases failed: {failures}"


@pytest.mark.parametrize("via", TRANSPORTS)
@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("version", ["8", "7", "14", ""])
async def test_other_websocket_versions_get_426_naming_13(
    start_gateway: StartGateway, tmp_path: Path, door: str, via: str, version: str
) -> None:
    # RFC 6455 §4.2.2: "426 Upgrade Required" with the Sec-WebSocket-Version we speak.
    from tests.e2e.conformance_support import _events_headers, door_path

    gw = await start_gateway({"apis": conformance_apis(tmp_path)})
    path, extra = door_path(door)
    if door == "events":
        extra = _events_headers(gw.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    if via == "aiohttp":
        writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n\r\n".encode())
        from tests.e2e.rawws import read_http_answer

        await read_http_answer(reader)
    header = f"Sec-WebSocket-Version: {version}\r\n" if version else ""
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"{header}{extra}\r\n".encode()
    )
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
    writer.close()
    assert head.startswith("HTTP/1.1 426 "), head
    assert "\r\nSec-WebSocket-Version: 13\r\n" in head, head
