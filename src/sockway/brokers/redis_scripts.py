"""Lua scripts of the Redis broker (``brokers/redis.py``, issue 6).

Each script is one atomic step, so a transition (occupied, vacated, member added/removed) is
decided by exactly one script run, whichever node runs it. The scripts that remove a *dead*
node's entry get two extra keys: the dead node's heartbeat key (the script does nothing and
returns -1 if the node is alive again) and its orphan list, where the transition is appended so
that a sweeper that dies midway leaves it for the next sweeper (see ``FINISH``).

Key roles are documented per script; ARGV strings are bytes-safe (Redis strings).
"""

from __future__ import annotations

# KEYS: counts hash, scope's occupied-channel zset, node's count index [, dead hb, orphans]
# ARGV: node id, count, channel, index entry
# Returns 1 occupied, 2 vacated, 0 neither, -1 dead node is alive again.
SET_COUNT = """
if #KEYS > 3 and redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
local before = redis.call('EXISTS', KEYS[1])
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[4])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[4])
end
local after = redis.call('EXISTS', KEYS[1])
if after == 1 and before == 0 then
  redis.call('ZADD', KEYS[2], 0, ARGV[3])
  return 1
end
if before == 1 and after == 0 then
  redis.call('ZREM', KEYS[2], ARGV[3])
  if #KEYS > 3 then redis.call('RPUSH', KEYS[5], 'vacated', ARGV[4], '') end
  return 2
end
return 0
"""

# KEYS: members hash, holders hash (user_key → JSON array of node ids), node's presence index
# ARGV: user_key, node id, member document, index entry
# Returns 1 when the user was held by no node (member added), else 0.
JOIN = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local holders = {}
if raw then holders = cjson.decode(raw) end
redis.call('SADD', KEYS[3], ARGV[4])
for _, n in ipairs(holders) do
  if n == ARGV[2] then return 0 end
end
table.insert(holders, ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(holders))
if #holders == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""

# KEYS: members hash, holders hash, node's presence index [, dead hb, orphans]
# ARGV: user_key, node id, index entry
# Returns {1, member} when the user's last holder left (member removed), 0 otherwise,
# -1 when the dead node is alive again.
LEAVE = """
if #KEYS > 3 and redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
redis.call('SREM', KEYS[3], ARGV[3])
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local rest = {}
local found = false
for _, n in ipairs(cjson.decode(raw)) do
  if n == ARGV[2] then found = true else table.insert(rest, n) end
end
if not found then return 0 end
if #rest > 0 then
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(rest))
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
local member = redis.call('HGET', KEYS[1], ARGV[1]) or ''
redis.call('HDEL', KEYS[1], ARGV[1])
if #KEYS > 3 then redis.call('RPUSH', KEYS[5], 'member_removed', ARGV[3], member) end
return {1, member}
"""

# KEYS: registry key, node's registry index [, dead hb]
# ARGV: node id, connection key.  Removes the entry only if this node still owns it.
RELEASE = """
if #KEYS > 2 and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: registry key; ARGV: heartbeat key prefix.  The owner if it is alive.
LOCATE = """
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[1] .. owner) == 1 then return owner end
return false
"""

# Shared by the read scripts: is node ``n`` alive (memoised per script run)?
_ALIVE = """
local alive_memo = {}
local function alive(n)
  local a = alive_memo[n]
  if a == nil then
    a = redis.call('EXISTS', ARGV[1] .. n) == 1
    alive_memo[n] = a
  end
  return a
end
local function live_sum(key)
  local fields = redis.call('HGETALL', key)
  local total = 0
  for i = 1, #fields, 2 do
    if alive(fields[i]) then total = total + tonumber(fields[i + 1]) end
  end
  return total
end
"""

# KEYS: counts hash; ARGV: heartbeat key prefix.  Sum over live nodes.
COUNT = _ALIVE + "return live_sum(KEYS[1])\n"

# KEYS: scope's occupied-channel zset
# ARGV: heartbeat key prefix, lex min, lex max, counts key head, counts key tail
# Returns a flat list channel, count, ... of channels with live subscribers.
CHANNELS = (
    _ALIVE
    + """
local out = {}
for _, ch in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3])) do
  local total = live_sum(ARGV[4] .. ch .. ARGV[5])
  if total > 0 then
    table.insert(out, ch)
    table.insert(out, tostring(total))
  end
end
return out
"""
)

# KEYS: members hash, holders hash; ARGV: heartbeat key prefix.
# Returns a flat list user_key, member, ... of users held by a live node.
MEMBERS = (
    _ALIVE
    + """
local out = {}
local holders = redis.call('HGETALL', KEYS[2])
for i = 1, #holders, 2 do
  for _, n in ipairs(cjson.decode(holders[i + 1])) do
    if alive(n) then
      table.insert(out, holders[i])
      table.insert(out, redis.call('HGET', KEYS[1], holders[i]) or '')
      break
    end
  end
end
return out
"""
)

# KEYS: heartbeat key, node set; ARGV: node id, ttl ms.
# Returns 1 if the heartbeat key still existed (0: it expired, the node may have been swept).
HEARTBEAT = """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return existed
"""

# KEYS: node set; ARGV: heartbeat key prefix, 'live', 'dead' or 'reachable' [, inbox channel
# prefix].  Matching node ids; reachable: live and connected to Redis (its inbox subscribed),
# so a node killed a moment ago is not waited for until its heartbeat expires (issue 13).
NODES = """
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local is_live = redis.call('EXISTS', ARGV[1] .. n) == 1
  if ARGV[2] == 'reachable' then
    if is_live and redis.call('PUBSUB', 'NUMSUB', ARGV[3] .. n)[2] > 0 then
      table.insert(out, n)
    end
  elseif is_live == (ARGV[2] == 'live') then
    table.insert(out, n)
  end
end
return out
"""

# KEYS: dead hb, node set, registry index, count index, presence index, lock, orphans
# ARGV: node id.  Ends a sweep: forgets the node if still dead, releases the lock and pops
# the transitions recorded by this and any earlier (interrupted) sweep: flat kind, entry,
# member, ...
FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
end
redis.call('DEL', KEYS[6])
local changes = redis.call('LRANGE', KEYS[7], 0, -1)
redis.call('DEL', KEYS[7])
return changes
"""

# KEYS: node set; ARGV: heartbeat key prefix, ready channel prefix, inbox channel prefix,
# strict ('1'/'0'), n, then n (channel, message) pairs, then expected node ids.  Publishes the
# n messages — all or none — only if every node that is up listens on its ready channel,
# which a node subscribes last, once Redis confirmed all its other subscriptions (issue 13):
# then every node that is up receives them. Up: live (its heartbeat) and connected (its inbox
# is subscribed; a node killed or cut off from Redis is not), and every expected node (those
# the publisher saw live before its own connection to Redis was lost; they may not have
# reconnected yet). Returns 0 when published to every node that is up, else the ids of the
# nodes not ready (then nothing was published, unless not strict: best effort, published to
# the others).
PUBLISH = """
local missing = {}
local function listens(channel)
  return redis.call('PUBSUB', 'NUMSUB', channel)[2] > 0
end
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  -- a live node connected to Redis (its inbox is subscribed) that is still resubscribing
  if redis.call('EXISTS', ARGV[1] .. n) == 1 and listens(ARGV[3] .. n)
      and not listens(ARGV[2] .. n) then
    table.insert(missing, n)
  end
end
local n = tonumber(ARGV[5])
for i = 6 + 2 * n, #ARGV do
  if not listens(ARGV[2] .. ARGV[i]) then table.insert(missing, ARGV[i]) end
end
if #missing > 0 and ARGV[4] == '1' then return missing end
for i = 0, n - 1 do
  redis.call('PUBLISH', ARGV[6 + 2 * i], ARGV[7 + 2 * i])
end
if #missing > 0 then return missing end
return 0
"""

ALL = {
    "publish": PUBLISH,
    "set_count": SET_COUNT,
    "join": JOIN,
    "leave": LEAVE,
    "release": RELEASE,
    "locate": LOCATE,
    "count": COUNT,
    "channels": CHANNELS,
    "members": MEMBERS,
    "heartbeat": HEARTBEAT,
    "nodes": NODES,
    "finish": FINISH,
}
