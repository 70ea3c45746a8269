-- Forget timer ARGV[1] (KEYS as in add_timer.lua); 1 if it existed.
local entry = redis.call('HGET', KEYS[3], ARGV[1])
if not entry then return 0 end
redis.call('ZREM', KEYS[1], entry)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
