"""Key layout and share bookkeeping of the Redis broker (``brokers/redis.py``, issue 6).

Every key and pub/sub channel starts with ``P:`` = ``{<key_prefix>}:``; pub/sub ignores the
database number, so the prefix is what isolates two gateways sharing one Redis. The braces make
the prefix every key's hash tag: on a Redis Cluster all of a gateway's keys are in one slot,
so the Lua scripts can update a channel's keys, a node's index and the orphan list atomically
(braces later in a key name, ``{<cid>}`` and ``{<node>}``, are plain characters there).

===============================================  ================================================
``P:hb:<node>``                                  heartbeat, PX = node_ttl_s (node alive iff set)
``P:nodes``                                      set of node ids known to sweep
``P:epoch``                                      random id of this Redis dataset (lost ⇒ fresh)
``P:lock:<node>``                                sweeper's lock on a dead node (SET NX PX)
``P:orph:{<node>}``                              transitions found sweeping it, not yet handed on
``P:ix:{<node>}:reg|cnt|pres``                   what the node contributed (sets of entries)
``P:reg:<connection key>``                       owning node id
``P:cnt:{<cid>}``                                hash node id → subscriber count
``P:chans:<scope>``                              zset (score 0) of channels with a count field
``P:pm:{<cid>}`` / ``P:ph:{<cid>}``              presence: user_key → member document / JSON
                                                 array of holder node ids
``P:t:<topic>``                                  pub/sub channel of a topic (patterns escaped)
``P:inbox:<node>``                               pub/sub channel of a node's requests/answers
===============================================  ================================================

Index entries are JSON arrays: ``[scope, channel]`` (counts), ``[scope, channel, user_key]``
(presence); registry entries are the connection key itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from sockway.brokers import redis_scripts
from sockway.brokers.base import Change, Transition

SHA = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in redis_scripts.ALL.items()}

Cmd = tuple[Any, ...]
# A command and how to turn its reply into a transition (None: the reply says nothing).
Step = tuple[Cmd, Callable[[Any], Change | None] | None]


def script(name: str, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Cmd:
    return ("EVALSHA", SHA[name], len(keys), *keys, *args)


def entry(*parts: str) -> str:
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


def glob_escape(text: str) -> str:
    """Escape Redis glob specials so ``PSUBSCRIBE`` treats ``text`` literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def count_transition(reply: Any) -> Transition | None:
    return {1: Transition.OCCUPIED, 2: Transition.VACATED}.get(int(reply))


def pack(*parts: bytes) -> bytes:
    """Length-prefixed fields: the envelope of publications and inbox messages."""
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def unpack(data: bytes) -> list[bytes]:
    parts, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        parts.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return parts


class Keys:
    def __init__(self, key_prefix: str) -> None:
        # One hash tag for every key: on a Redis Cluster they all live in one slot, so the
        # scripts may touch any of them atomically (a key's first ``{...}`` is its tag).
        prefix = "{" + key_prefix + "}"
        self.p = prefix
        self.nodes = f"{prefix}:nodes"
        self.epoch = f"{prefix}:epoch"
        self.hb_prefix = f"{prefix}:hb:"
        self.topic_prefix = f"{prefix}:t:".encode()

    def hb(self, node: str) -> str:
        return self.hb_prefix + node

    def lock(self, node: str) -> str:
        return f"{self.p}:lock:{node}"

    def orphans(self, node: str) -> str:
        return f"{self.p}:orph:{{{node}}}"

    def index(self, node: str, kind: str) -> str:
        return f"{self.p}:ix:{{{node}}}:{kind}"

    def reg(self, key: str) -> str:
        return f"{self.p}:reg:{key}"

    def counts_head(self, scope: str) -> str:
        return f"{self.p}:cnt:{{{len(scope)}:{scope}:"

    def counts(self, scope: str, channel: str) -> str:
        return f"{self.counts_head(scope)}{channel}}}"

    def chans(self, scope: str) -> str:
        return f"{self.p}:chans:{scope}"

    def members(self, scope: str, channel: str) -> str:
        return f"{self.p}:pm:{{{len(scope)}:{scope}:{channel}}}"

    def holders(self, scope: str, channel: str) -> str:
        return f"{self.p}:ph:{{{len(scope)}:{scope}:{channel}}}"

    @property
    def inbox_prefix(self) -> str:
        return f"{self.p}:inbox:"

    def inbox(self, node: str) -> str:
        return self.inbox_prefix + node

    @property
    def ready_prefix(self) -> str:
        return f"{self.p}:ready:"

    def ready(self, node: str) -> str:
        """The pub/sub channel a node subscribes once all its subscriptions are confirmed."""
        return self.ready_prefix + node

    def channel(self, key: str) -> str:
        """The pub/sub channel (or pattern) of a subscription key."""
        if key.endswith("*"):
            return f"{self.p}:t:{glob_escape(key[:-1])}*"
        return f"{self.p}:t:{key}"

    # -- one entry of a node's share: the command that writes or removes it ----------------

    def dead_keys(self, node: str, dead: bool) -> list[str]:
        return [self.hb(node), self.orphans(node)] if dead else []

    def set_count(self, node: str, scope: str, channel: str, n: int, dead: bool = False) -> Step:
        keys = [self.counts(scope, channel), self.chans(scope), self.index(node, "cnt")]
        cmd = script(
            "set_count",
            keys + self.dead_keys(node, dead),
            [node, n, channel, entry(scope, channel)],
        )

        def parse(reply: Any) -> Change | None:
            t = count_transition(reply)
            return Change(t, scope, channel) if t is not None else None

        return cmd, parse

    def join(self, node: str, scope: str, channel: str, user: str, member: bytes) -> Step:
        keys = [
            self.members(scope, channel),
            self.holders(scope, channel),
            self.index(node, "pres"),
        ]
        cmd = script("join", keys, [user, node, member, entry(scope, channel, user)])

        def parse(reply: Any) -> Change | None:
            if reply == 1:
                return Change(Transition.MEMBER_ADDED, scope, channel, user, member)
            return None

        return cmd, parse

    def leave(self, node: str, scope: str, channel: str, user: str, dead: bool = False) -> Step:
        keys = [
            self.members(scope, channel),
            self.holders(scope, channel),
            self.index(node, "pres"),
        ]
        cmd = script(
            "leave", keys + self.dead_keys(node, dead), [user, node, entry(scope, channel, user)]
        )

        def parse(reply: Any) -> Change | None:
            if isinstance(reply, list):
                return Change(Transition.MEMBER_REMOVED, scope, channel, user, bytes(reply[1]))
            return None

        return cmd, parse

    def register(self, node: str, key: str) -> list[Cmd]:
        return [("SET", self.reg(key), node), ("SADD", self.index(node, "reg"), key)]

    def release(self, node: str, key: str, dead: bool = False) -> Cmd:
        keys = [self.reg(key), self.index(node, "reg")] + ([self.hb(node)] if dead else [])
        return script("release", keys, [node, key])

    def removals(
        self, node: str, reg: set[str], cnt: set[str], pres: set[str], dead: bool
    ) -> list[Step]:
        """Remove the given index entries of ``node`` (stale ones, or a dead node's share)."""
        steps: list[Step] = [(self.release(node, key, dead), None) for key in reg]
        for e in cnt:
            scope, channel = json.loads(e)
            steps.append(self.set_count(node, scope, channel, 0, dead))
        for e in pres:
            scope, channel, user = json.loads(e)
            steps.append(self.leave(node, scope, channel, user, dead))
        return steps

    def finish(self, node: str) -> Cmd:
        keys = [self.hb(node), self.nodes]
        keys += [self.index(node, k) for k in ("reg", "cnt", "pres")]
        return script("finish", [*keys, self.lock(node), self.orphans(node)], [node])


def parse_orphans(flat: list[bytes]) -> list[Change]:
    """The transitions of ``FINISH``: flat kind, index entry, member triples."""
    changes = []
    for i in range(0, len(flat), 3):
        kind, parts, member = flat[i].decode(), json.loads(flat[i + 1]), flat[i + 2]
        if kind == "vacated":
            changes.append(Change(Transition.VACATED, parts[0], parts[1]))
        else:
            changes.append(Change(Transition.MEMBER_REMOVED, parts[0], parts[1], parts[2], member))
    return changes


def decode_set(raw: Any) -> set[str]:
    return {m.decode() if isinstance(m, bytes) else str(m) for m in raw}
