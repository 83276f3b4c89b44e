"""The Lua scripts: admission, renewal, publishing and reading a thread, each atomic in Redis.

Time comes from Redis (``TIME``), never from an instance, so that "oldest" and "expired" mean
the same on every instance. A lease is one hash field per connection in the user's hash::

    <connection id> -> "<expires ms> <admitted us> <instance id> <session id>"

Expired leases are dropped whenever the hash is touched, and the hash key itself expires one
TTL after its last write, so a user whose instances all died leaves nothing behind.
"""

_CLOCK = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now_us = string.format('%d%06d', clock[1], clock[2])
"""

_LIVE_LEASES = """
local live = {}
local live_count = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local expires, admitted, instance, session =
    string.match(fields[i + 1], '^(%d+) (%d+) (%S+) (%S+)$')
  if expires == nil or tonumber(expires) <= now_ms then
    redis.call('HDEL', KEYS[1], fields[i])
  else
    live[fields[i]] = {admitted, instance, session}
    live_count = live_count + 1
  end
end
"""

ADMIT = (
    _CLOCK
    + _LIVE_LEASES
    + """
-- KEYS[1] leases; ARGV: connection, instance, session, ttl_ms, limit, policy, takeover
local ttl_ms, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local reply = {0}
if ARGV[7] == '1' then
  for connection, lease in pairs(live) do
    if lease[3] == ARGV[3] then
      redis.call('HDEL', KEYS[1], connection)
      live[connection] = nil
      live_count = live_count - 1
      table.insert(reply, connection)
      table.insert(reply, lease[2])
      table.insert(reply, 'replaced')
    end
  end
end
if live_count >= limit and ARGV[6] == 'reject' then
  return reply
end
if live_count >= limit then
  local order = {}
  for connection, lease in pairs(live) do
    table.insert(order, {tonumber(lease[1]), connection, lease[2]})
  end
  table.sort(order, function(a, b)
    if a[1] == b[1] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  for i = 1, live_count - limit + 1 do
    redis.call('HDEL', KEYS[1], order[i][2])
    table.insert(reply, order[i][2])
    table.insert(reply, order[i][3])
    table.insert(reply, 'superseded')
  end
end
redis.call('HSET', KEYS[1], ARGV[1],
  string.format('%d %s %s %s', now_ms + ttl_ms, now_us, ARGV[2], ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ttl_ms)
reply[1] = 1
table.insert(reply, 2, now_us)
return reply
"""
)
"""Reply: ``[1, admitted_us, conn, instance, reason, ...]``, or ``[0, conn, instance, reason, ...]``
when rejected (the triples are the replaced connections, even on a rejection)."""

RENEW = (
    _CLOCK
    + _LIVE_LEASES
    + """
-- KEYS[1] leases; ARGV: instance, ttl_ms, limit, then (connection, session, admitted_us)...
local instance, ttl_ms, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local reply = {}
for i = 4, #ARGV, 3 do
  local connection, session, admitted = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local lease = live[connection]
  if admitted == '' then admitted = now_us end
  if lease ~= nil then
    redis.call('HSET', KEYS[1], connection,
      string.format('%d %s %s %s', now_ms + ttl_ms, lease[1], instance, session))
    table.insert(reply, 'renewed')
  elseif live_count < limit then
    redis.call('HSET', KEYS[1], connection,
      string.format('%d %s %s %s', now_ms + ttl_ms, admitted, instance, session))
    live_count = live_count + 1
    table.insert(reply, 'recreated')
  else
    table.insert(reply, 'over')
  end
end
if live_count > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end
return reply
"""
)
"""Reply: one of ``renewed``, ``recreated``, ``over`` per connection, in ARGV order."""

PUBLISH = (
    _CLOCK
    + """
-- Number, retain and fan out events, each at most once per idempotency key.
-- KEYS, three per event: a thread event's meta, log and idempotency key; a user-level event's
-- epoch key twice and its idempotency key (the first key again when the event has none).
-- ARGV[1..6]: new epoch, max events, retention ms, meta ttl ms, publish command (PUBLISH, or
-- SPUBLISH on a cluster: the channel is in the keys' slot), user epoch ttl ms (0: kept);
-- then six per event: kind ('t' or 'u'), head, tail, header prefix, channel, idempotency ms (0: none)
local reply = {}
local k = 0
for i = 7, #ARGV, 6 do
  local first, second, idem = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  k = k + 3
  local head, tail, header, channel = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local idem_ms = tonumber(ARGV[i + 5])
  local prior_offset, prior_epoch = nil, nil
  if idem_ms > 0 then
    local prior = redis.call('GET', idem)
    if prior then
      prior_offset, prior_epoch = string.match(prior, '^(%d+) (%S+)$')
    end
  end
  if prior_offset then
    table.insert(reply, tonumber(prior_offset))
    table.insert(reply, prior_epoch)
    table.insert(reply, 1)
  else
    local offset, epoch, number
    if ARGV[i] == 't' then
      epoch = redis.call('HGET', first, 'epoch')
      if not epoch then
        epoch = ARGV[1]
        redis.call('DEL', second)
        redis.call('HSET', first, 'epoch', epoch)
      end
      offset = redis.call('HINCRBY', first, 'last', 1)
      number = offset
    else
      epoch = redis.call('GET', first)
      if not epoch then
        epoch = ARGV[1]
        redis.call('SET', first, epoch)
      end
      if tonumber(ARGV[6]) > 0 then
        redis.call('PEXPIRE', first, ARGV[6])
      end
      offset = 0
      number = 'null'
    end
    local frame = head .. number .. ',"epoch":"' .. epoch .. '"' .. tail
    if offset > 0 then
      redis.call('XADD', second, 'MAXLEN', ARGV[2], offset .. '-0', 'f', frame, 't', now_ms)
      redis.call('PEXPIRE', second, ARGV[3])
      redis.call('PEXPIRE', first, ARGV[4])
    end
    redis.call(ARGV[5], channel, header .. number .. ',"' .. epoch .. '"]\\n' .. frame)
    if idem_ms > 0 then
      redis.call('SET', idem, offset .. ' ' .. epoch, 'PX', idem_ms)
    end
    table.insert(reply, offset)
    table.insert(reply, epoch)
    table.insert(reply, 0)
  end
end
return reply
"""
)
"""Reply: ``[offset, epoch, duplicate, ...]``, three per event in order (offset 0 for a
user-level event; duplicate 1 when its idempotency key was seen, and nothing was published).
The epoch key of user-level events is the dataset's on a single Redis (kept), the user's on a
cluster (kept as long as a thread's numbering)."""

READ_THREAD = (
    _CLOCK
    + """
-- KEYS[1] meta, KEYS[2] log; ARGV: new epoch, after ('' for none), meta ttl ms, and optionally
-- count and max age ms: at most count events, those stored more than max age ago left out
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local last = redis.call('HGET', KEYS[1], 'last') or '0'
local reply = {epoch, last, string.format('%d', now_ms)}
if ARGV[2] == '' or tonumber(ARGV[2]) >= tonumber(last) then
  return reply
end
local count = tonumber(ARGV[4] or '')
local horizon = nil
if count then
  horizon = now_ms - tonumber(ARGV[5])
end
local start = tonumber(ARGV[2]) + 1
local kept = 0
while true do
  local entries
  if count then
    entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', start), '+', 'COUNT', count)
  else
    entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', start), '+')
  end
  for _, entry in ipairs(entries) do
    local offset = string.match(entry[1], '^(%d+)-')
    local values = entry[2]
    local frame, stored = '', '0'
    for i = 1, #values, 2 do
      if values[i] == 'f' then frame = values[i + 1] end
      if values[i] == 't' then stored = values[i + 1] end
    end
    start = tonumber(offset) + 1
    if horizon == nil or tonumber(stored) > horizon then
      table.insert(reply, offset)
      table.insert(reply, stored)
      table.insert(reply, frame)
      kept = kept + 1
      if count and kept >= count then
        return reply
      end
    end
  end
  if count == nil or #entries < count then
    return reply
  end
end
"""
)
"""The thread's epoch (created if it has none), last offset, Redis's clock, and every retained
event after ``after`` (with a count: the first ``count`` stored within the max age, for
``GET /api/threads/{thread_id}/events``). Reply: ``[epoch, last, now_ms, offset, stored_ms,
frame, ...]``."""

RESTART_THREAD = """
-- KEYS[1] meta, KEYS[2] log; ARGV: the epoch that diverged, new epoch, meta ttl ms
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'epoch', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
"""Start a thread again at offset 1 in a new epoch, unless another instance already did (its epoch
is no longer the diverged one). Reply: 1 when this call restarted it."""

RESERVE_TICKET = (
    _CLOCK
    + """
-- KEYS[1] the user's unused tickets (digest -> expiry ms); ARGV: digest, ttl ms, cap
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)
"""Count a new ticket toward its user's cap, on every instance alike: 1, or 0 when the user
already holds ``cap`` unexpired unused ones. One key, so it runs on a cluster too; the ticket
itself is another key (another slot), written after it."""

SHARED_KEY = """
-- KEYS[1] the key; ARGV[1] the value to set when there is none
local value = redis.call('GET', KEYS[1])
if value then
  return value
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""
"""The value every instance agrees on: the first one set wins. Reply: the value."""
