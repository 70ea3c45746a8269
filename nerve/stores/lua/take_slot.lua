-- Hold a slot of KEYS[1] (the sorted set of a limiter's key: holder -> lease end) for
-- holder ARGV[1] until ARGV[4], at time ARGV[3], if fewer than ARGV[2] others hold one;
-- 1 if held, else 0. Ended leases (end <= now) are dropped first; a holder taking again
-- renews its lease. The set expires a minute after its last lease ends.
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tonumber(last[2]) - now) * 1000) + 60000))
return 1
