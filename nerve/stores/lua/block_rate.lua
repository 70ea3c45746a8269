-- Raise the TAT of KEYS[1] to ARGV[1] (a pause's end plus the burst) unless it is later
-- already; ARGV[2] is the time now, for the expiry (a minute after the TAT is past).
local blocked = tonumber(ARGV[1])
local ms = math.ceil((blocked - tonumber(ARGV[2])) * 1000) + 60000
if ms <= 0 then return 0 end  -- past already: equals a fresh state
local tat = redis.call('GET', KEYS[1])
if tat and tonumber(tat) >= blocked then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ms)
return 1
