--[==[
  restore: put back a reservation record lost from Redis (flush, failover, fail-open), taken
  from the Postgres archive, so commit can settle it through the normal script.

  KEYS: 1 reservation record
  ARGV: ttlMs, then field, value, ... (the state field is written as "E": its holds are gone
        with the lost counters, so a commit charges the actual usage and returns nothing)
  Returns 1 if restored, 0 if a record already exists (another replica restored it first).
]==]
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
