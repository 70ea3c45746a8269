-- A subscription's unsettled work, in one consistent look: [pending on the events stream,
-- length of its direct stream (unread + pending), retries in its delayed set, entries of
-- the events stream past ARGV[2] not scanned (-1: unknown), then (type, count) pairs of the
-- events stream entries its group has not read yet, at most ARGV[2] of them]. False when
-- the group does not exist.
--
-- KEYS: the events stream, the subscription's direct stream, its delayed set.
-- ARGV: the group (the subscription's name), how many unread entries to scan at most.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local group = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then group = f end
end
if group == nil then return false end
local direct = 0
if redis.call('EXISTS', KEYS[2]) == 1 then direct = redis.call('XLEN', KEYS[2]) end
local counts, scanned, left = {}, 0, tonumber(ARGV[2])
local start = '(' .. group['last-delivered-id']
while left > 0 do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', math.min(left, 1000))
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    local fields, t = entry[2], ''
    for i = 1, #fields, 2 do
      if fields[i] == 't' then t = fields[i + 1] break end
    end
    counts[t] = (counts[t] or 0) + 1
  end
  scanned = scanned + #batch
  left = left - #batch
  start = '(' .. batch[#batch][1]
end
local rest = 0
if left <= 0 then
  rest = -1
  if type(group['lag']) == 'number' then rest = math.max(0, group['lag'] - scanned) end
end
local reply = {group['pending'], direct, redis.call('ZCARD', KEYS[3]), rest}
for t, n in pairs(counts) do
  reply[#reply + 1] = t
  reply[#reply + 1] = n
end
return reply
