-- Prepended to the scripts that write steps or counters. Keep `key` (the steps or
-- counters of an event) a window (`ttl` ms) from now, or for good while the event has
-- dead letters (`dead`, the event's dead letter index) or waits (`waiting`, its index of
-- waits).
local function keep(key, dead, waiting, ttl)
  if redis.call('EXISTS', dead, waiting) > 0 then redis.call('PERSIST', key)
  else redis.call('PEXPIRE', key, ttl) end
end
