"""A longer soak of the churn ledger (issue 13): ``tests/e2e/churn.py`` for minutes, not seconds.

    python bench/churn_soak.py [--seconds 120] [--nodes 3] [--every 15] [--seed N] [--node-ttl 3]

Three ``sockway serve`` processes on a private redis-server (started here, on an ephemeral
port); clients of the three front doors churn (join, leave, reset, stall) while one publisher
per door broadcasts over HTTP. Every ``--every`` seconds a fault: alternately a Redis restart
(empty, as without persistence) and a SIGKILL of a node other than the first, which is then
replaced by a fresh process. At the end the ledger is checked and its figures printed as one
JSON line (messages, deliveries due, churn events, restarts, kills, lost, duplicated); exit
status 1 when anything was lost, duplicated or otherwise broken. Figures: bench/RESULTS.md
"Churn soak".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.churn import Churn, Hooks, config
from tests.e2e.redis_cluster import Node, start_nodes
from tests.redis_support import RedisServer


async def soak(seconds: float, count: int, every: float, seed: int, ttl: float) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="sockway-churn-"))
    hooks = await Hooks().start()
    redis = RedisServer(tmp / "redis").start()
    started: list[Node] = []
    try:
        prefix = f"soak-{uuid.uuid4().hex[:8]}"
        path = config(tmp, hooks.url, redis.url, prefix=prefix, node_ttl_s=ttl)
        started += await start_nodes(path, count)
        killed: set[int] = set()

        def alive() -> list[int]:
            return [i for i in range(len(started)) if i not in killed]

        churn = Churn(seed, lambda: [n.port for n in started], alive, hooks)
        rng = random.Random(seed + 1)

        async def chaos() -> None:
            kill_next = False
            while not churn.stop.is_set():
                await asyncio.sleep(every)
                if churn.stop.is_set():
                    return
                if kill_next:
                    victim = rng.choice([i for i in alive() if i != 0])
                    await churn.kill(victim, started[victim], killed)
                    started.append(await Node(path).start())
                else:
                    await churn.restart_redis(redis, [started[i].port for i in alive()])
                kill_next = not kill_next

        await churn.run(seconds=seconds, clients_per_door=8, chaos=chaos)
        figures = churn.check()
        churn.check_presence()
        print(json.dumps({"seed": seed, "seconds": seconds, "nodes": count, **figures}))
        for error in churn.errors[:30]:
            print("BROKEN:", error, file=sys.stderr)
        for i, node in enumerate(started):
            for line in node.log().splitlines():
                if "expired" in line or "Traceback" in line or "ERROR" in line:
                    print(f"node {i}: {line}", file=sys.stderr)
        return 1 if churn.errors or figures["lost"] or figures["duplicated"] else 0
    finally:
        for node in started:
            await node.stop()
        redis.stop()
        await hooks.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--node-ttl", type=float, default=3.0, help="broker node_ttl_s")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"churn seed: {seed}", file=sys.stderr)
    sys.exit(asyncio.run(soak(args.seconds, args.nodes, args.every, seed, args.node_ttl)))


if __name__ == "__main__":
    main()
