-- Write timer ARGV[1] (due ARGV[2], body ARGV[3]) unless it exists and ARGV[4] (replace)
-- is empty; 1 if written, else 0. KEYS: the sorted set of entries by due, the bodies, each
-- timer's entry, the write counter. An entry is "seq:timer id" with seq the zero-padded
-- count of writes, so that timers due at once come in the order they were written.
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then
  if ARGV[4] == '' then return 0 end
  redis.call('ZREM', KEYS[1], old)
end
local entry = string.format('%016d:', redis.call('INCR', KEYS[4])) .. ARGV[1]
redis.call('ZADD', KEYS[1], ARGV[2], entry)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], entry)
return 1
