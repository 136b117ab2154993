--[==[
  reconcile: set the used parts of quota counter hashes to the ledger's totals (the ledger wins),
  but only where they still hold what reconciliation read before it summed the ledger.

  KEYS: the counter hashes to repair, all of one tenant (one hash tag, so one Cluster slot)
  ARGV[1]: JSON [[expectedTok, expectedUsd, ledgerTok, ledgerUsd], ...] one per key, as decimal
           strings: compared and stored as strings, so no float ever touches a figure
  Returns one code per key:
    0  missing    the hash is gone (flush, expiry): left alone, the hot path re-seeds it from the ledger
    1  busy       tok/usd changed since they were read (a commit settled): left alone, retried next run
    2  repaired   tok/usd set to the ledger's totals
    3  unchanged  tok/usd already equal the ledger's totals
  The held parts (tokh, usdh: in-flight reservations) are never touched, nor is the TTL.
]==]
local v = cjson.decode(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local e = v[i]
  if redis.call('EXISTS', KEYS[i]) == 0 then
    out[i] = 0
  else
    local h = redis.call('HMGET', KEYS[i], 'tok', 'usd')
    local tok, usd = h[1] or '0', h[2] or '0'
    if tok ~= e[1] or usd ~= e[2] then
      out[i] = 1
    elseif tok == e[3] and usd == e[4] then
      out[i] = 3
    else
      redis.call('HSET', KEYS[i], 'tok', e[3], 'usd', e[4])
      out[i] = 2
    end
  end
end
return out
