-- After dead letters of one event were taken: forget every counter of subscriptions
-- ARGV[2..] (a replay starts its counts afresh) and let steps and counters (KEYS[1],
-- KEYS[2]) expire a window (ARGV[1] ms) from now unless the event still has dead letters
-- (KEYS[3]) or waits (KEYS[4]).
local subs = {}
for i = 2, #ARGV do subs[ARGV[i] .. '\0'] = true end
for _, field in ipairs(redis.call('HKEYS', KEYS[2])) do
  local sep = string.find(field, '\0', 1, true)
  if sep and subs[string.sub(field, 1, sep)] then redis.call('HDEL', KEYS[2], field) end
end
keep(KEYS[1], KEYS[3], KEYS[4], ARGV[1])
keep(KEYS[2], KEYS[3], KEYS[4], ARGV[1])
