-- Move due retries from the delayed set KEYS[1] to the direct stream KEYS[2], at most
-- ARGV[1] of them; return the milliseconds until the next one is due, or -1 when none waits.
-- A member of the delayed set is "{attempt} {event JSON}", scored by its due time (ms).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local sep = string.find(member, ' ', 1, true)
  redis.call('XADD', KEYS[2], '*', 'a', string.sub(member, 1, sep - 1),
             'e', string.sub(member, sep + 1))
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return -1 end
return math.max(0, tonumber(nxt[2]) - now)
