-- Add to a counter in KEYS[1] (the event's counters): its fields start with ARGV[2]
-- ("subscription NUL counter NUL"); ARGV[3..] are pairs of name and amount. Keep the
-- counters ARGV[1] ms, or while the event has dead letters (KEYS[2]) or waits (KEYS[3]).
-- With no amounts, only read. Returns the counter's totals as [name, total, ...].
local prefix = ARGV[2]
if #ARGV > 2 then
  for i = 3, #ARGV, 2 do
    redis.call('HINCRBYFLOAT', KEYS[1], prefix .. ARGV[i], ARGV[i + 1])
  end
  keep(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
end
local out = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, #prefix) == prefix then
    out[#out + 1] = string.sub(fields[i], #prefix + 1)
    out[#out + 1] = fields[i + 1]
  end
end
return out
