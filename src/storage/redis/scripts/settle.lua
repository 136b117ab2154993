--[==[
  settle: finish one reservation: commit actual usage, release it unused, or expire it.

  KEYS:
    1  reservation record            2  tenant reservation expiry index (zset)
    3 .. 2+nq               quota/budget counter hashes of the reservation's periods
    3+nq .. 2+nq+nb         token buckets the reservation drew on
    3+nq+nb .. 2+nq+nb+nc   concurrency zsets it occupies
  ARGV[1]: JSON { op: "commit"|"release"|"expire", rid, nq, b = [[dim, capacity]], nc,
                  in, out, cost (actual figures, commit only), status }
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
local function fmt(x) return string.format('%.0f', x) end

local rec = redis.call('HMGET', KEYS[1], 'st', 'in', 'out', 'cost', 'exp', 'ci', 'co', 'cc', 'cs')
local st = rec[1]
if not st then return {'NOTFOUND'} end
local heldIn, heldOut, heldCost = tonumber(rec[2]), tonumber(rec[3]), tonumber(rec[4])
local nq, nb, nc = a.nq, #a.b, a.nc
local qbase, bbase, cbase = 2, 2 + nq, 2 + nq + nb

local function quotaState()
  local out = {}
  for i = 1, nq do
    local h = redis.call('HMGET', KEYS[qbase + i], 'tok', 'tokh', 'usd', 'usdh')
    out[i] = (h[1] or '') .. ':' .. (h[2] or '') .. ':' .. (h[3] or '') .. ':' .. (h[4] or '')
  end
  return table.concat(out, ',')
end

-- Return what a reserved request holds: quota/budget holds, its concurrency slots, its expiry entry.
local function returnHolds()
  for i = 1, nq do
    local key = KEYS[qbase + i]
    if redis.call('EXISTS', key) == 1 then
      redis.call('HINCRBY', key, 'tokh', fmt(-(heldIn + heldOut)))
      redis.call('HINCRBY', key, 'usdh', fmt(-heldCost))
    end
  end
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
  local late = '0'
  if st == 'R' then
    returnHolds()
    adjustBuckets(a['in'], a.out)
  else
    late = '1' -- expired or released: holds went back already; the actual usage is still charged
  end
  for i = 1, nq do
    local key = KEYS[qbase + i]
    if redis.call('EXISTS', key) == 1 then
      redis.call('HINCRBY', key, 'tok', fmt(a['in'] + a.out))
      redis.call('HINCRBY', key, 'usd', fmt(a.cost))
    end
  end
  redis.call('HSET', KEYS[1], 'st', 'C', 'ci', fmt(a['in']), 'co', fmt(a.out), 'cc', fmt(a.cost), 'cs', a.status,
    'late', late, 'done', fmt(now))
  return {'APPLIED', late, quotaState()}
end

if st ~= 'R' then
  redis.call('ZREM', KEYS[2], a.rid)
  return {'NOOP', st}
end

if a.op == 'release' then
  returnHolds()
  adjustBuckets(0, 0)
  redis.call('HSET', KEYS[1], 'st', 'X', 'done', fmt(now))
  return {'RELEASED'}
end

-- expire: only once its time has come by Redis's clock; several sweepers may race, one wins.
if tonumber(rec[5]) > now then return {'NOOP', 'R'} end
returnHolds()
redis.call('HSET', KEYS[1], 'st', 'E', 'done', fmt(now))
return {'EXPIRED'}
