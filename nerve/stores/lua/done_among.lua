-- Which of the done-mark hashes KEYS hold a mark of subscription ARGV[1] at or after
-- ARGV[2] (unix time): their 1-based indexes. One script, not an HGET per event: redis-py
-- packs and parses each command in Python, which cost more than the lookups themselves.
local out = {}
for i, key in ipairs(KEYS) do
  local at = redis.call('HGET', key, ARGV[1])
  if at and tonumber(at) >= tonumber(ARGV[2]) then out[#out + 1] = i end
end
return out
