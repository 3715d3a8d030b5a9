"""The rate limiter's Lua scripts (limits/redis.py): each decides or applies atomically in Redis,
on Redis's own clock unless a test passes one.

KEYS and ARGV layouts are given above each script; `RedisLimiter` builds them.
"""

# Now, in microseconds: Redis's own clock, unless the last ARGV gives one (a test's fake clock;
# RedisLimiter(redis_clock=...)). Every script below is registered after it.
NOW = """
local now = tonumber(ARGV[#ARGV])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# K (keys): concurrency set, then one key per limit. A (arguments): max concurrency (-1: none),
# slot id, slot ttl (us), then per limit: rate, cost. Returns {allowed, refused index (0: concurrency),
# then remaining, retry_us, reset_us per limit decided}.
ADMIT_FUNCTION = """
local function admit(K, A)
local maxc = tonumber(A[1])
if maxc >= 0 then
  redis.call('ZREMRANGEBYSCORE', K[1], '-inf', now)
  if redis.call('ZCARD', K[1]) >= maxc then
    return {0, 0}
  end
end
local out = {1, -1}
local tats = {}
for i = 2, #K do
  local rate = tonumber(A[2 + (i - 1) * 2])
  local cost = tonumber(A[3 + (i - 1) * 2])
  local interval = 60000000 / rate
  local tat = tonumber(redis.call('GET', K[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - 60000000
  if allow_at > now + 1 then
    local remaining = math.floor((60000000 - (tat - now)) / interval + 1e-9)
    if remaining < 0 then remaining = 0 end
    table.insert(out, remaining)
    table.insert(out, math.ceil(allow_at - now))
    table.insert(out, math.ceil(tat - now))
    out[1] = 0
    out[2] = i - 1
    return out
  end
  local remaining = math.floor((60000000 - (new_tat - now)) / interval + 1e-9)
  if remaining < 0 then remaining = 0 end
  table.insert(out, remaining)
  table.insert(out, 0)
  table.insert(out, math.ceil(new_tat - now))
  tats[i] = new_tat
end
for i = 2, #K do
  redis.call('SET', K[i], string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000) + 1000)
end
if maxc >= 0 then
  local ttl = tonumber(A[3])
  redis.call('ZADD', K[1], now + ttl, A[2])
  redis.call('PEXPIRE', K[1], math.ceil(ttl / 1000) + 1000)
end
return out
end
"""
ADMIT = ADMIT_FUNCTION + "return admit(KEYS, ARGV)"

# Many admissions in one call, decided one after the other exactly as ADMIT would: KEYS from
# index k are theirs one after the other; ARGV from index a to `last` per admission: its number
# of keys, its number of arguments, then its arguments. Returns ADMIT's answer for each, in order.
ADMIT_MANY_FUNCTION = """
local function admit_many(k, a, last)
local out = {}
while a <= last do
  local nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local K, A = {}, {}
  for j = 1, nk do K[j] = KEYS[k + j - 1] end
  for j = 1, na do A[j] = ARGV[a + 1 + j] end
  table.insert(out, admit(K, A))
  k = k + nk
  a = a + 2 + na
end
return out
end
"""
ADMIT_MANY = ADMIT_FUNCTION + ADMIT_MANY_FUNCTION + "return admit_many(1, 1, #ARGV - 1)"

# KEYS: concurrency set (or ''), then token keys. ARGV: slot id (or ''), then a delta (us) per key.
FINISH = """
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then
    local tat = tonumber(v) + tonumber(ARGV[i])
    if tat > now then
      redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return 1
"""

# Many finishes in one call: KEYS from index k are theirs one after the other; ARGV from index a
# to `last` per finish: its number of keys (n), its slot id (or ''), then n - 1 deltas (us). Each
# applied as FINISH does, in order.
FINISH_MANY_FUNCTION = """
local function finish_many(k, a, last)
while a <= last do
  local n = tonumber(ARGV[a])
  if ARGV[a + 1] ~= '' then redis.call('ZREM', KEYS[k], ARGV[a + 1]) end
  for j = 1, n - 1 do
    local v = redis.call('GET', KEYS[k + j])
    if v then
      local tat = tonumber(v) + tonumber(ARGV[a + 1 + j])
      if tat > now then
        redis.call('SET', KEYS[k + j], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
      else
        redis.call('DEL', KEYS[k + j])
      end
    end
  end
  k = k + n
  a = a + n + 1
end
end
"""
FINISH_MANY = FINISH_MANY_FUNCTION + "finish_many(1, 1, #ARGV - 1) return 1"

# The finishes waiting when admissions go, in the same call: ARGV[1] and ARGV[2] are the number
# of KEYS and of ARGV of the finishes (FINISH_MANY's), which come first and are applied first
# (their requests ended before these were admitted: a slot they free counts for them); then the
# admissions' (ADMIT_MANY's). Returns ADMIT's answer for each admission, in order.
FINISH_THEN_ADMIT = (
    ADMIT_FUNCTION
    + ADMIT_MANY_FUNCTION
    + FINISH_MANY_FUNCTION
    + """
local fk, fa = tonumber(ARGV[1]), tonumber(ARGV[2])
finish_many(1, 3, 2 + fa)
return admit_many(fk + 1, 3 + fa, #ARGV - 1)
"""
)

# KEYS: concurrency sets; ARGV: slot ttl (us), then `set index, slot id` pairs. Renews live slots.
RENEW = """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV - 1, 2 do
  local k = KEYS[tonumber(ARGV[i])]
  redis.call('ZADD', k, 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', k, math.ceil(ttl / 1000) + 1000)
end
return 1
"""
