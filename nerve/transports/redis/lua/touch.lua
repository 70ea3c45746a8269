-- Set the idle time of the entries this consumer still owns (0: keep them; large: release
-- them). Checking the owner first keeps a stalled consumer from taking an entry back.
--
-- KEYS[1]: the stream. ARGV: group, consumer, idle time (ms), then the entry ids.
-- Returns how many entries were still this consumer's.
local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
