-- Trim the events stream below the oldest entry any consumer group still needs (its first
-- pending entry, or the last it read) and below the retention horizon ARGV[1] (ms), never
-- above either. Returns the number of entries deleted.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return {tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))}
end
local function less(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end
local t = redis.call('TIME')
local floor = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1]) + 1, 0}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local needed = parse(f['last-delivered-id'])
  if f['pending'] > 0 then
    needed = parse(redis.call('XPENDING', KEYS[1], f['name'])[2])
  end
  if less(needed, floor) then floor = needed end
end
if floor[1] <= 0 then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', floor[1] .. '-' .. floor[2])
