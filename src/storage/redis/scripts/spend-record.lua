--[==[
  spend-record: one flush of one tenant's buffered usage (abuse controls), atomically.

  KEYS (all carry the tenant's hash tag):
    1  spend per bucket (hash bucket -> nano-USD)
    2  the tenant's active keys (zset keyId -> last bucket)
    then per entry i of ARGV.k: 2+2i-1 the key's stats hash, 2+2i the key's fingerprint HLL for that bucket
  ARGV[1]: JSON
    keep = ms every touched key lives on without an evaluator (refreshed on each flush)
    sp   = [[bucket, "nanoUsd"]]                                   spend to add
    k    = [[keyId, bucket, requests, inputTokens, maxInputTokens, [fingerprint, ...]]]
  Returns 1.
  Stats fields are "<bucket>:r" requests, ":t" prompt tokens, ":m" the largest prompt, ":f" set
  when the bucket saw fingerprints (so the evaluator only counts HLLs that exist).
]==]
local a = cjson.decode(ARGV[1])
local keep = a.keep

for _, s in ipairs(a.sp) do
  redis.call('HINCRBY', KEYS[1], tostring(s[1]), s[2])
end
if #a.sp > 0 then redis.call('PEXPIRE', KEYS[1], keep) end

for i, k in ipairs(a.k) do
  local stats, hll = KEYS[2 + 2 * i - 1], KEYS[2 + 2 * i]
  local b = tostring(k[2])
  redis.call('HINCRBY', stats, b .. ':r', k[3])
  redis.call('HINCRBY', stats, b .. ':t', k[4])
  local m = tonumber(redis.call('HGET', stats, b .. ':m') or '0')
  if k[5] > m then redis.call('HSET', stats, b .. ':m', k[5]) end
  local fps = k[6]
  if #fps > 0 then
    -- unpack() is bounded by the Lua stack: add in slices.
    for j = 1, #fps, 500 do
      redis.call('PFADD', hll, unpack(fps, j, math.min(j + 499, #fps)))
    end
    redis.call('HSET', stats, b .. ':f', 1)
    redis.call('PEXPIRE', hll, keep)
  end
  redis.call('PEXPIRE', stats, keep)
  local last = tonumber(redis.call('ZSCORE', KEYS[2], k[1]) or '-1')
  if k[2] > last then redis.call('ZADD', KEYS[2], k[2], k[1]) end
end
if #a.k > 0 then redis.call('PEXPIRE', KEYS[2], keep) end
return 1
