--[==[
  breaker-apply: store a breaker's new state record if nobody changed it since it was read
  (compare-and-set on "ver"), and keep the hot path's deny flag in step with it.

  KEYS (one hash tag: the tenant's, or the global breaker's):
    1  the state record (hash)
    2  optional: the deny flag the reserve script reads (present while OPEN or HALF_OPEN)
    3  optional: the spend buckets (hash bucket -> nano-USD) to trim
  ARGV:
    1  the version read ("" = there was no record)
    2  "set" | "del" | "keep": what to do with the flag
    3  the flag's value (the reason) when set
    4  drop spend buckets below this index ("" = keep all)
    5  ms the record lives on (0 = forever: an open breaker must never evaporate)
    6.. field, value, ... of the new record
  Returns 1 when stored, 0 when the version no longer matches (nothing changed).
]==]
local cur = redis.call('HGET', KEYS[1], 'ver')
if ARGV[1] == '' then
  if cur then return 0 end
elseif cur ~= ARGV[1] then
  return 0
end

redis.call('DEL', KEYS[1])
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
local keep = tonumber(ARGV[5])
if keep > 0 then redis.call('PEXPIRE', KEYS[1], keep) end

if #KEYS >= 2 then
  if ARGV[2] == 'set' then
    redis.call('SET', KEYS[2], ARGV[3])
  elseif ARGV[2] == 'del' then
    redis.call('DEL', KEYS[2])
  end
end

if #KEYS >= 3 and ARGV[4] ~= '' then
  local below = tonumber(ARGV[4])
  local old = {}
  for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
    if tonumber(f) < below then old[#old + 1] = f end
  end
  for j = 1, #old, 500 do
    redis.call('HDEL', KEYS[3], unpack(old, j, math.min(j + 499, #old)))
  end
end
return 1
