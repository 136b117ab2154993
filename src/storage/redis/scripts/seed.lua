--[==[
  seed: (re)create missing quota/budget counter hashes from ledger totals, set-if-absent.

  KEYS: the counter hashes to seed
  ARGV[1]: JSON [["usedTokens", "usedNano", ttlMs], ...] one per key (figures as decimal strings,
           stored as given so no float ever touches them)
  Returns the number of hashes created. A hash that exists (another replica seeded it, or
  reserves already use it) is left untouched: the first seed wins, like SET NX.
]==]
local v = cjson.decode(ARGV[1])
local created = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'tok', v[i][1], 'tokh', '0', 'usd', v[i][2], 'usdh', '0')
    redis.call('PEXPIRE', KEYS[i], v[i][3])
    created = created + 1
  end
end
return created
