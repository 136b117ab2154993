--[==[
  settle: finish one reservation: commit actual usage, release it unused, or expire it.

  KEYS:
    1  reservation record            2  tenant reservation expiry index (zset)
    3 .. 2+nq               quota/budget counter hashes of the reservation's periods
    3+nq .. 2+nq+nb         token buckets the reservation drew on
    3+nq+nb .. 2+nq+nb+nc   concurrency zsets it occupies
  ARGV[1]: JSON { op: "commit"|"release"|"expire", rid, nq, b = [[dim, capacity]], nc,
                  in, out, cost (actual figures, commit only), status,
                  keep (ms a settled record stays for replays; later ones go to the archive) }
  Returns
    {"NOTFOUND"}
    commit:  {"APPLIED", late "0"|"1", quotaState} | {"REPLAY", in, out, cost, status, quotaState}
             | {"CONFLICT", in, out, cost, status}
    release: {"RELEASED"} | {"NOOP", state}
    expire:  {"EXPIRED"} | {"NOOP", state}
    quotaState = "tok:tokh:usd:usdh,..." per quota hash after the change
  States: R reserved, C committed, X released, E expired. Holds are returned exactly once: only
  the transition out of R returns them. Counter hashes that no longer exist (flushed) are left
  alone: they will be re-seeded from the ledger, which is where this usage is being written.
]==]
local a = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- '%.0f' of a negative zero is "-0", which HINCRBY refuses: a zero always prints as "0".
local function fmt(x) if x == 0 then return '0' end return string.format('%.0f', x) end
-- Doubles hold every integer up to 2^53 exactly; past it, figures move with HINCRBY (int64).
local EXACT = 9007199254740992

local rec = redis.call('HMGET', KEYS[1], 'st', 'in', 'out', 'cost', 'exp', 'ci', 'co', 'cc', 'cs')
local st = rec[1]
if not st then return {'NOTFOUND'} end
local heldIn, heldOut, heldCost = tonumber(rec[2]), tonumber(rec[3]), tonumber(rec[4])
local nq, nb, nc = a.nq, #a.b, a.nc
local qbase, bbase, cbase = 2, 2 + nq, 2 + nq + nb
local FIELDS = { 'tok', 'tokh', 'usd', 'usdh' }

-- Moves the quota hashes that still exist by (tok, tokh, usd, usdh) deltas and returns the
-- state after: one read and one write per hash. A hash that is gone (flushed) is left alone:
-- it will be re-seeded from the ledger, which is where this usage is being written.
local function moveQuotas(d)
  local out = {}
  for i = 1, nq do
    local key = KEYS[qbase + i]
    local h = redis.call('HMGET', key, 'tok', 'tokh', 'usd', 'usdh')
    if not h[1] then
      out[i] = ':::'
    elseif d[1] == 0 and d[2] == 0 and d[3] == 0 and d[4] == 0 then
      out[i] = h[1] .. ':' .. (h[2] or '') .. ':' .. (h[3] or '') .. ':' .. (h[4] or '')
    else
      local n, exact = {}, true
      for j = 1, 4 do
        local v = tonumber(h[j] or '0')
        n[j] = v + d[j]
        if math.abs(v) >= EXACT or math.abs(d[j]) >= EXACT or math.abs(n[j]) >= EXACT then exact = false end
      end
      if exact then
        for j = 1, 4 do n[j] = fmt(n[j]) end
        redis.call('HSET', key, 'tok', n[1], 'tokh', n[2], 'usd', n[3], 'usdh', n[4])
      else
        -- HINCRBY's reply becomes a Lua number (a double): read the exact strings back.
        for j = 1, 4 do redis.call('HINCRBY', key, FIELDS[j], fmt(d[j])) end
        local after = redis.call('HMGET', key, 'tok', 'tokh', 'usd', 'usdh')
        for j = 1, 4 do n[j] = after[j] or '' end
      end
      out[i] = table.concat(n, ':')
    end
  end
  return table.concat(out, ',')
end

local function quotaState() return moveQuotas({ 0, 0, 0, 0 }) end

-- The rest of what a reserved request holds: its concurrency slots and its expiry entry.
local function returnSlots()
  for i = 1, nc do redis.call('ZREM', KEYS[cbase + i], a.rid) end
  redis.call('ZREM', KEYS[2], a.rid)
end

-- Move token-bucket levels by what was held minus what is charged (a refund, or debt on overage).
local function adjustBuckets(chargeIn, chargeOut)
  for i = 1, nb do
    local key = KEYS[bbase + i]
    local dim, cap = a.b[i][1], a.b[i][2]
    local delta = 0
    if dim == 'in' then delta = heldIn - chargeIn elseif dim == 'out' then delta = heldOut - chargeOut end
    if delta ~= 0 then
      local v = tonumber(redis.call('HGET', key, 'v') or '')
      if v then redis.call('HSET', key, 'v', string.format('%.17g', math.min(cap, v + delta))) end
    end
  end
end

if a.op == 'commit' then
  if st == 'C' then
    if rec[6] == fmt(a['in']) and rec[7] == fmt(a.out) and rec[9] == a.status then
      return {'REPLAY', rec[6], rec[7], rec[8], rec[9], quotaState()}
    end
    return {'CONFLICT', rec[6], rec[7], rec[8], rec[9]}
  end
  -- Charge the actual usage; a reserved request also returns its holds in the same write.
  -- Expired or released: the holds went back already, only the usage is charged ("late").
  local late, d = '1', { a['in'] + a.out, 0, a.cost, 0 }
  if st == 'R' then
    late = '0'
    d[2], d[4] = -(heldIn + heldOut), -heldCost
    returnSlots()
    adjustBuckets(a['in'], a.out)
  end
  local state = moveQuotas(d)
  redis.call('HSET', KEYS[1], 'st', 'C', 'ci', fmt(a['in']), 'co', fmt(a.out), 'cc', fmt(a.cost), 'cs', a.status,
    'late', late, 'done', fmt(now))
  redis.call('PEXPIRE', KEYS[1], a.keep, 'LT')
  return {'APPLIED', late, state}
end

if st ~= 'R' then
  redis.call('ZREM', KEYS[2], a.rid)
  return {'NOOP', st}
end

local returnHolds = { 0, -(heldIn + heldOut), 0, -heldCost }

if a.op == 'release' then
  moveQuotas(returnHolds)
  returnSlots()
  adjustBuckets(0, 0)
  redis.call('HSET', KEYS[1], 'st', 'X', 'done', fmt(now))
  redis.call('PEXPIRE', KEYS[1], a.keep, 'LT')
  return {'RELEASED'}
end

-- expire: only once its time has come by Redis's clock; several sweepers may race, one wins.
if tonumber(rec[5]) > now then return {'NOOP', 'R'} end
moveQuotas(returnHolds)
returnSlots()
redis.call('HSET', KEYS[1], 'st', 'E', 'done', fmt(now))
redis.call('PEXPIRE', KEYS[1], a.keep, 'LT')
return {'EXPIRED'}
