-- GCRA: take ARGV[3] units (negative: give back) of KEYS[1] (a string holding the TAT) at
-- time ARGV[1], with emission interval ARGV[2] and burst ARGV[4]; record the new TAT if
-- the units conform (within ARGV[6]) or ARGV[5] (force) is not empty. Returns the seconds
-- until they would conform ('0' if they do), as a string: Lua numbers become integers.
-- The TAT expires a minute after it is past (a past TAT equals a fresh state).
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or ARGV[1]), now)
local new = math.max(now, tat + tonumber(ARGV[3]) * interval)
local wait = new - now - tonumber(ARGV[4]) * interval
local conforms = wait <= tonumber(ARGV[6])
if conforms or ARGV[5] ~= '' then
  redis.call('SET', KEYS[1], string.format('%.17g', new),
    'PX', math.ceil((new - now) * 1000) + 60000)
end
if conforms then return '0' end
return string.format('%.17g', wait)
