-- Mark subscription ARGV[1] done at ARGV[2] in each done-mark hash KEYS[odd], expiring it
-- after ARGV[3] ms, and forget its failures in KEYS[even]. Atomic, like a MULTI.
for i = 1, #KEYS, 2 do
  redis.call('HSET', KEYS[i], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[3])
  redis.call('HDEL', KEYS[i + 1], ARGV[1])
end
return #KEYS / 2
