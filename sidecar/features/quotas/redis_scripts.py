"""Lua scripts run atomically inside Redis: check-and-reserve over all charges, claim, settle, and peek.

Levels are returned as strings (`%.17g`, exact for integers up to 2^53): Redis would truncate Lua
numbers to integers, and Lua's own tostring keeps only 14 digits. The clock is
Redis's own (`TIME`), so replicas with skewed clocks still drain buckets and leases alike.
"""

from __future__ import annotations

# Every script starts with this: `num` (a level as an exact string), `now` (Redis's clock, ms),
# `bucket_level` (a token bucket's level drained up to now: cap per `period` ms) and `level_of` (any
# counter's level; `sweep` drops expired slots, which only RESERVE may do).
_PRELUDE = """
local function num(x) return string.format('%.17g', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function bucket_level(key, cap, period)
  local v = redis.call('HMGET', key, 'u', 't')
  local last = tonumber(v[2]) or now
  return math.max(0, (tonumber(v[1]) or 0) - math.max(0, now - last) * cap / period)
end
local function level_of(kind, key, cap, extra, sweep)
  if kind == 'bucket' then return bucket_level(key, cap, extra) end
  if kind == 'window' then return tonumber(redis.call('GET', key)) or 0 end
  if sweep then  -- slots whose lease ran out go; a read-only look just does not count them
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    return redis.call('ZCARD', key)
  end
  return redis.call('ZCOUNT', key, '(' .. now, '+inf')
end
"""

# KEYS: one per charge. ARGV[1]: reservation id; ARGV[2]: 1 to reserve, 0 to only look; then 5 per charge:
# counter type, cap, amount, enforced (1/0), extra (bucket: period ms; window: end ms; slots: lease ms).
RESERVE = _PRELUDE + """
local rid = ARGV[1]
local used = {}
local ok = true
for i = 1, #KEYS do
  local b = 3 + (i - 1) * 5
  local kind, cap, amount = ARGV[b], tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local extra = tonumber(ARGV[b + 4])
  local level = level_of(kind, KEYS[i], cap, extra, true)
  used[i] = level
  if ARGV[b + 3] == '1' and level + amount > cap then ok = false end
end
if ok and ARGV[2] == '1' then
  for i = 1, #KEYS do
    local b = 3 + (i - 1) * 5
    local kind, cap, amount = ARGV[b], tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
    local extra = tonumber(ARGV[b + 4])
    used[i] = used[i] + amount
    if kind == 'bucket' then
      redis.call('HSET', KEYS[i], 'u', num(used[i]), 't', num(now))
      redis.call('PEXPIRE', KEYS[i], math.ceil(used[i] * extra / cap) + 1000)
    elseif kind == 'window' then
      -- The raw argument strings: Lua would print big numbers as 1e+15, which INCRBY rejects.
      redis.call('INCRBY', KEYS[i], ARGV[b + 2])
      redis.call('PEXPIREAT', KEYS[i], ARGV[b + 4])
    else
      redis.call('ZADD', KEYS[i], now + extra, rid)
      if redis.call('PTTL', KEYS[i]) < extra then redis.call('PEXPIRE', KEYS[i], extra) end
    end
  end
end
local out = {ok and 1 or 0, num(now)}
for i = 1, #KEYS do out[#out + 1] = num(used[i]) end
-- Per charge, the earliest lease end of the slots held (0 for other counters or none held).
for i = 1, #KEYS do
  local frees = 0
  if ARGV[3 + (i - 1) * 5] == 'slots' then
    local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    if first[2] then frees = tonumber(first[2]) / 1000 end
  end
  out[#out + 1] = num(frees)
end
return out
"""

# KEYS[1]: the reservation's marker; then its slot keys. ARGV: reservation id, lease ms, marker ttl ms.
# Pending -> claimed once; the slots get their full lease (a slot whose arrival lease ran out is re-added).
CLAIM = _PRELUDE + """
if not redis.call('SET', KEYS[1], 'claimed', 'NX', 'PX', ARGV[3]) then return 0 end
local lease = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now + lease, ARGV[1])
  if redis.call('PTTL', KEYS[i]) < lease then redis.call('PEXPIRE', KEYS[i], lease) end
end
return 1
"""

# KEYS[1]: the reservation's marker; then one per adjustment. ARGV[1]: reservation id; ARGV[2]: marker
# ttl ms; ARGV[3]: 1 to settle only a pending (never claimed) reservation; then 4 per key: counter type,
# delta, cap, period ms. Applies at most once per reservation: returns 0 when it changed nothing.
SETTLE = _PRELUDE + """
local rid = ARGV[1]
local state = redis.call('GET', KEYS[1])
if state == 'settled' or (ARGV[3] == '1' and state == 'claimed') then return 0 end
redis.call('SET', KEYS[1], 'settled', 'PX', ARGV[2])
for i = 2, #KEYS do
  local b = 4 + (i - 2) * 4
  local kind, delta = ARGV[b], tonumber(ARGV[b + 1])
  if kind == 'slots' then
    redis.call('ZREM', KEYS[i], rid)
  elseif kind == 'window' then
    if delta ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
      if redis.call('INCRBY', KEYS[i], ARGV[b + 1]) < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
    end
  elseif delta ~= 0 then
    local cap, period = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
    local level = math.max(0, bucket_level(KEYS[i], cap, period) + delta)
    redis.call('HSET', KEYS[i], 'u', num(level), 't', num(now))
    redis.call('PEXPIRE', KEYS[i], math.ceil(level * period / cap) + 1000)
  end
end
return 1
"""

# Read only, for the status page: KEYS one per charge; ARGV 3 per charge: counter type, cap, extra
# (bucket: period ms). Returns the store's clock (ms) then each level. Writes nothing: slots whose
# lease ran out are left for RESERVE to sweep, and simply not counted here.
PEEK = _PRELUDE + """
local out = {num(now)}
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local kind, cap, extra = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  out[#out + 1] = num(level_of(kind, KEYS[i], cap, extra, false))
end
return out
"""
