-- Remove and return the dead letters matching (event id, subscription), '' for any, as
-- [entry, score, ...]. KEYS[1] is the dead letter hash, KEYS[2] their order; ARGV[1] is
-- the prefix of the per-event index keys, ARGV[2] the event id, ARGV[3] the subscription.
local members
if ARGV[2] ~= '' then
  members = {}
  for _, sub in ipairs(redis.call('SMEMBERS', ARGV[1] .. ARGV[2])) do
    members[#members + 1] = sub .. '\0' .. ARGV[2]
  end
else
  members = redis.call('ZRANGE', KEYS[2], 0, -1)
end
local out = {}
for _, m in ipairs(members) do
  local sep = string.find(m, '\0', 1, true)
  local sub, eid = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
  if ARGV[3] == '' or sub == ARGV[3] then
    local entry = redis.call('HGET', KEYS[1], m)
    if entry then
      out[#out + 1] = entry
      out[#out + 1] = redis.call('ZSCORE', KEYS[2], m) or '0'
      redis.call('HDEL', KEYS[1], m)
      redis.call('ZREM', KEYS[2], m)
      redis.call('SREM', ARGV[1] .. eid, sub)
    end
  end
end
return out
