--[==[
  auth-throttle-fail: count one failed authentication of a client address or key prefix and
  block it once the window holds `max` failures.

  KEYS (one hash tag per address or prefix):
    1  the window's failure counter     2  the block marker
  ARGV: 1 windowMs, 2 max, 3 blockMs
  Returns {failures, blockedMs, tripped}
    blockedMs  how long the scope is blocked from now (0 = not blocked)
    tripped    1 when this failure started the block (report it once), else 0
  The counter starts afresh when a block starts; failures during a block keep counting, so a
  client that keeps failing is blocked again as soon as the block ends.
]==]
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then return {n, ttl, 0} end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], n, 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return {n, tonumber(ARGV[3]), 1}
end
return {n, 0, 0}
