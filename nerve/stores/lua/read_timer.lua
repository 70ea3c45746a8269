-- Timer ARGV[1] as [due, body], or nil (KEYS as in add_timer.lua). A script: a claim
-- moves its entry, which a HGET then ZSCORE could miss in between.
local entry = redis.call('HGET', KEYS[3], ARGV[1])
if not entry then return nil end
return {redis.call('ZSCORE', KEYS[1], entry), redis.call('HGET', KEYS[2], ARGV[1])}
