-- The waits indexed under each key set KEYS[2..]: per key set, the JSON of its waits
-- (from the hash KEYS[1]). One script, so that the ids and the bodies take one round trip.
local out = {}
for i = 2, #KEYS do
  local found = {}
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    local body = redis.call('HGET', KEYS[1], id)
    if body then found[#found + 1] = body end
  end
  out[#out + 1] = found
end
return out
