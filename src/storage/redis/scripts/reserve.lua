--[==[
  reserve: one checkAndReserve decision for one tenant, atomically and all-or-nothing.

  KEYS (all carry the tenant's hash tag):
    1  idempotency record            2  idempotency rendered decision
    3  reservation record (hash)     4  tenant reservation expiry index (zset)
    5  tenant breaker flag
    6 .. 5+nq               quota/budget counter hashes (tok, tokh, usd, usdh)
    6+nq .. 5+nq+nb         token buckets (hash v, t)
    6+nq+nb .. 5+nq+nb+nc   concurrency zsets (resId -> expiresAt ms)
  ARGV[1]: JSON spec
    rid, ttl (ms), keep (ms the record outlives its expiry), idem (0/1), fp (request fingerprint),
    dl (deadline, ms on Redis's clock: past it the caller has timed out and answered already),
    crit (0/1: CRITICAL priority passes an open breaker), nq,
    qc    = [[quotaIndex, "tok"|"usd", limit, dimName]]   checks on the quota hashes
    b     = [[ratePerMs, capacity, "rq"|"in"|"out"]]      one per bucket key
    c     = [limit]                                       one per concurrency key
    plans = [[inputTokens, outputTokens, costNano, denyCode, model, inPrice, outPrice]]
            1 = as requested, 2.. = ladder rungs; the chosen one's model and prices are recorded
    lad   = [[dimName, atPercent, planIndex]]             in ladder order; the last reached wins
    rec   = [field, value, ...]                           stored on the reservation record
    settle = string                                       what commit/release/expiry must touch
  Returns one of
    {"OK", outcome "A"|"D", plan, nowMs, expiresAtMs, fails, qcRemaining, bRemaining, bFullMs, cRemaining}
        fails = "kind:index:waitMs,..." (kind plan|brk|b|c|q; waitMs -1 = waiting cannot help)
    {"REPLAY", storedJson, renderedJson}  an idempotency key seen before with the same request
    {"CONFLICT"}                          the same idempotency key with a different request
    {"SEED", i, ...}                      quota hashes missing: re-seed them from the ledger first
    {"LATE"}                              the script ran after the caller's deadline: nothing done
  Nothing is written unless the outcome is "A" (apart from the idempotency record).
  Time comes from Redis TIME so replicas with skewed clocks agree.
]==]
local spec = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- '%.0f' of a negative zero is "-0", which HINCRBY refuses: a zero always prints as "0".
local function fmt(x) if x == 0 then return '0' end return string.format('%.0f', x) end
-- Doubles hold every integer up to 2^53 exactly; past it, holds move with HINCRBY (int64).
local EXACT = 9007199254740992

-- A script that runs after its caller gave up (a stalled server catching up) must not take
-- holds nobody will ever commit or release.
if spec.dl > 0 and now > spec.dl then return {'LATE'} end

if spec.idem == 1 then
  local prev = redis.call('GET', KEYS[1])
  if prev then
    local stored = cjson.decode(prev)
    if stored.fp ~= spec.fp then return {'CONFLICT'} end
    return {'REPLAY', prev, redis.call('GET', KEYS[2]) or ''}
  end
end

local nq, nb, nc = spec.nq, #spec.b, #spec.c
local qbase, bbase, cbase = 5, 5 + nq, 5 + nq + nb

-- A lost counter (flush, failover) must never read as zero: ask for a re-seed from the ledger.
-- Every live counter hash has "tok" (seed writes it; nothing else creates a hash), so one
-- HMGET per hash tells both whether it exists and what it holds.
local qv, missing = {}, {}
for i = 1, nq do
  local h = redis.call('HMGET', KEYS[qbase + i], 'tok', 'tokh', 'usd', 'usdh')
  if not h[1] then missing[#missing + 1] = tostring(i) end
  qv[i] = { tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0'), tonumber(h[4] or '0') }
end
if #missing > 0 then
  table.insert(missing, 1, 'SEED')
  return missing
end
local function usedOf(c)
  local v = qv[c[1]]
  if c[2] == 'tok' then return v[1] + v[2] end
  return v[3] + v[4]
end

-- The degradation ladder: the last rung whose dimension usage reached its percent wins.
local plan = 1
for _, r in ipairs(spec.lad) do
  for _, c in ipairs(spec.qc) do
    if c[4] == r[1] and usedOf(c) * 100 >= r[2] * c[3] then
      plan = r[3]
      break
    end
  end
end
local P = spec.plans[plan]
local pin, pout, pcost, pdeny = P[1], P[2], P[3], P[4]

local fails = {}
local function fail(kind, idx, wait) fails[#fails + 1] = kind .. ':' .. idx .. ':' .. fmt(wait) end

if pdeny ~= 0 then fail('plan', pdeny, -1) end
if spec.crit == 0 and redis.call('EXISTS', KEYS[5]) == 1 then fail('brk', 0, -1) end

local bnew, bfull = {}, {}
for i = 1, nb do
  local b = spec.b[i]
  local rate, cap, dim = b[1], b[2], b[3]
  local h = redis.call('HMGET', KEYS[bbase + i], 'v', 't')
  local v = tonumber(h[1] or '') or cap
  local ts = tonumber(h[2] or '') or now
  if now > ts then v = math.min(cap, v + (now - ts) * rate) end
  local amt = 1
  if dim == 'in' then amt = pin elseif dim == 'out' then amt = pout end
  if v < amt then
    local wait = -1
    if amt <= cap then wait = math.ceil((amt - v) / rate) end
    fail('b', i, wait)
  end
  bnew[i] = { v, amt }
end

local clive = {}
for i = 1, nc do
  clive[i] = redis.call('ZCOUNT', KEYS[cbase + i], '(' .. fmt(now), '+inf')
  if clive[i] + 1 > spec.c[i] then fail('c', i, 1000) end
end

for i, c in ipairs(spec.qc) do
  local amt = pcost
  if c[2] == 'tok' then amt = pin + pout end
  if usedOf(c) + amt > c[3] then fail('q', i, -1) end
end

local allowed = #fails == 0
local exp = now + spec.ttl

local qrem, brem, bf, crem = {}, {}, {}, {}
for i, c in ipairs(spec.qc) do
  local amt = 0
  if allowed then
    if c[2] == 'tok' then amt = pin + pout else amt = pcost end
  end
  qrem[i] = fmt(c[3] - usedOf(c) - amt)
end
for i = 1, nb do
  local v, amt = bnew[i][1], bnew[i][2]
  if allowed then v = v - amt end
  brem[i] = fmt(math.floor(v))
  local cap, rate = spec.b[i][2], spec.b[i][1]
  bf[i] = fmt(math.max(0, math.ceil((cap - v) / rate)))
end
for i = 1, nc do
  local live = clive[i]
  if allowed then live = live + 1 end
  crem[i] = fmt(spec.c[i] - live)
end

local result = {
  allowed and 'A' or 'D', tostring(plan), fmt(now), allowed and fmt(exp) or '0',
  table.concat(fails, ','), table.concat(qrem, ','), table.concat(brem, ','), table.concat(bf, ','), table.concat(crem, ','),
}

if allowed then
  for i = 1, nb do
    local b = spec.b[i]
    local key = KEYS[bbase + i]
    redis.call('HSET', key, 'v', string.format('%.17g', bnew[i][1] - bnew[i][2]), 't', fmt(now))
    redis.call('PEXPIRE', key, math.ceil(b[2] / b[1]) + 60000)
  end
  for i = 1, nc do
    local key = KEYS[cbase + i]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    redis.call('ZADD', key, exp, spec.rid)
    redis.call('PEXPIRE', key, spec.ttl + 60000)
  end
  for i = 1, nq do
    local tokh, usdh = qv[i][2] + pin + pout, qv[i][4] + pcost
    if math.abs(qv[i][2]) < EXACT and math.abs(qv[i][4]) < EXACT and math.abs(tokh) < EXACT and math.abs(usdh) < EXACT then
      redis.call('HSET', KEYS[qbase + i], 'tokh', fmt(tokh), 'usdh', fmt(usdh))
    else
      redis.call('HINCRBY', KEYS[qbase + i], 'tokh', fmt(pin + pout))
      redis.call('HINCRBY', KEYS[qbase + i], 'usdh', fmt(pcost))
    end
  end
  redis.call('HSET', KEYS[3], 'st', 'R', 'in', fmt(pin), 'out', fmt(pout), 'cost', fmt(pcost), 'plan', tostring(plan),
    'exp', fmt(exp), 'at', fmt(now), 'settle', spec.settle, 'md', P[5], 'pin', P[6], 'pout', P[7], unpack(spec.rec))
  redis.call('PEXPIRE', KEYS[3], spec.ttl + spec.keep)
  redis.call('ZADD', KEYS[4], exp, spec.rid)
end

if spec.idem == 1 then
  redis.call('SET', KEYS[1], cjson.encode({ fp = spec.fp, r = result }), 'PX', 86400000)
end
table.insert(result, 1, 'OK')
return result
