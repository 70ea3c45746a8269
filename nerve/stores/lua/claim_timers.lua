-- Claim up to ARGV[3] timers due at ARGV[1] or before (KEYS as in add_timer.lua), each
-- moved to ARGV[2] (the lease's end) as the newest write. Returns [id, old due, body, ...],
-- earliest first. One script, so that two claimers never take the same timer.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
local out = {}
for i = 1, #due, 2 do
  local old = due[i]
  local id = string.sub(old, string.find(old, ':', 1, true) + 1)
  redis.call('ZREM', KEYS[1], old)
  local body = redis.call('HGET', KEYS[2], id)
  if body then
    local entry = string.format('%016d:', redis.call('INCR', KEYS[4])) .. id
    redis.call('ZADD', KEYS[1], ARGV[2], entry)
    redis.call('HSET', KEYS[3], id, entry)
    out[#out + 1] = id
    out[#out + 1] = due[i + 1]
    out[#out + 1] = body
  end  -- else not a timer (its keys are only written together): dropped
end
return out
