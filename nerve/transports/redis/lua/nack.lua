-- Acknowledge the original entry and requeue the event for this subscription, atomically.
-- Returns -1 (and requeues nothing) when the entry was no longer pending: someone settled it.
--
-- KEYS: the stream the entry came from, the subscription's direct stream, its delayed set.
-- ARGV: group, entry id, delay (ms), next attempt number, event JSON, '1' when KEYS[1] is
-- the direct stream (its entry is deleted once settled: only this group reads it).
-- A delay of 0 goes straight to the direct stream; another waits in the delayed set,
-- scored by its due time on the server's clock (hosts' clocks do not matter).
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return -1 end
if ARGV[6] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
local delay = tonumber(ARGV[3])
if delay <= 0 then
  redis.call('XADD', KEYS[2], '*', 'a', ARGV[4], 'e', ARGV[5])
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], now + delay, ARGV[4] .. ' ' .. ARGV[5])
return delay
