-- Delete consumers with nothing pending, idle longer than ARGV[2] ms (ARGV[3]: only this
-- one, or '' for any but ARGV[4]). Atomic, so no entry is dropped from a consumer's list.
--
-- KEYS: the streams the group ARGV[1] reads. Returns how many consumers went.
local n = 0
for _, key in ipairs(KEYS) do
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', key, ARGV[1])) do
    local f = {}
    for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
    local wanted = (ARGV[3] == '' and f['name'] ~= ARGV[4]) or f['name'] == ARGV[3]
    if wanted and f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) then
      redis.call('XGROUP', 'DELCONSUMER', key, ARGV[1], f['name'])
      n = n + 1
    end
  end
end
return n
