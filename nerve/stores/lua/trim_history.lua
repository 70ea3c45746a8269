-- Forget what the event log holds from before ARGV[3] (unix time): trim the feed
-- (KEYS[1]) to stream ids from ARGV[2] on, and each per-type index listed in the set
-- ARGV[1] .. ':log:types' to scores from ARGV[3] on (a type whose index empties leaves the
-- set). Other keys of the log expire on their own.
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
local types = ARGV[1] .. ':log:types'
for _, etype in ipairs(redis.call('SMEMBERS', types)) do
  local key = ARGV[1] .. ':log:type:' .. etype
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[3])
  if redis.call('EXISTS', key) == 0 then redis.call('SREM', types, etype) end
end
