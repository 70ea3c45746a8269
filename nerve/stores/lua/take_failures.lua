-- Remove and return subscription ARGV[1]'s failures in KEYS[1] (one JSON per line).
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
return old
