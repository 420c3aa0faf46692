"""The Autobahn testsuite's fuzzingclient against the websocket API on both transports
(issue 13, standing test A; the counts are in README "Reliability and conformance").

Autobahn needs an echo server: the websocket door with an echo ``$default`` route is one
(limits raised so the 9.* sizes fit); the Pusher and AppSync doors speak their own protocols
over the same transports, and ``test_rfc6455.py`` runs the same case families against all
three. ``picows`` is a fresh connection's upgrade, ``aiohttp`` an upgrade after a plain request
on a keep-alive connection (through ``KeepAliveProxy``).

A case fails this test when it does worse than ``EXPECTED`` allows: a case not listed there
must pass (Autobahn's OK or NON-STRICT: NON-STRICT is a pass whose frames came in another
allowed order, e.g. a protocol-error close before the echo of an earlier valid message, which
depends on timing); a listed case may not get worse than its entry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartGateway
from tests.e2e.autobahn_support import RANK, KeepAliveProxy, counts, run_fuzzingclient
from tests.e2e.conformance_support import conformance_apis

RUN_TIMEOUT_S = 300  # one run of both agents takes ~30 s here

_BINARY = "the websocket API refuses binary messages with 1003, as API Gateway does"
# case → (worst behaviour allowed, why) per agent; absent: must be OK or NON-STRICT.
_BOTH: dict[str, tuple[str, str]] = {
    **{f"1.2.{n}": ("FAILED", _BINARY) for n in range(1, 9)},
    "9.2.1": ("FAILED", _BINARY),
    "9.2.2": ("FAILED", _BINARY),
    "7.1.6": ("INFORMATIONAL", "the close is handled before a 256 KB echo is returned"),
    "7.13.1": ("INFORMATIONAL", "close code 5000: Autobahn leaves the outcome open (we: 1002)"),
    "7.13.2": ("INFORMATIONAL", "close code 65535: as 7.13.1"),
}
EXPECTED: dict[str, dict[str, tuple[str, str]]] = {
    "picows": {
        **_BOTH,
        "7.1.2": (
            "FAILED",
            "two close frames in one read: picows 2.3 answers the second with 1002 itself",
        ),
    },
    "aiohttp": dict(_BOTH),
}


@pytest.mark.timeout(RUN_TIMEOUT_S + 600)  # + a first install (~50 s) when make did not run
async def test_autobahn_fuzzingclient_on_both_transports(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway(
        {
            "apis": conformance_apis(
                tmp_path, max_frame_bytes=4 * 1024 * 1024, max_message_bytes=4 * 1024 * 1024
            )
        }
    )
    proxy = await KeepAliveProxy(gw.port).start()
    try:
        report = await run_fuzzingclient(
            {
                "picows": f"ws://127.0.0.1:{gw.port}/dev",
                "aiohttp": f"ws://127.0.0.1:{proxy.port}/dev",
            },
            tmp_path,
            RUN_TIMEOUT_S,
        )
    finally:
        await proxy.stop()
    assert set(report) == {"picows", "aiohttp"}
    regressions: dict[str, str] = {}
    for agent, results in report.items():
        assert len(results) == 250, f"{agent}: {len(results)} cases ran, not 250"
        allowed = EXPECTED[agent]
        for case, result in results.items():
            worst = allowed.get(case, ("NON-STRICT", ""))[0]
            if RANK.index(result["behavior"]) > RANK.index(worst):
                regressions[f"{agent} {case}"] = (
                    f"{result['behavior']} (allowed: {worst}); close: {result['behaviorClose']}"
                )
        print(agent, counts(results))  # shown with -s; README's table comes from these
    assert not regressions, regressions
