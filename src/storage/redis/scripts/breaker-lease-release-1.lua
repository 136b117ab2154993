--[==[
  breaker-lease-release: give up the abuse evaluator's lease, but only our own (a lease that
  expired and was taken by another worker stays theirs).

  KEYS[1]  the lease    ARGV[1]  our token
  Returns 1 when released, 0 when the lease was not ours.
]==]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
