-- Append one attempt error (ARGV[2]) to subscription ARGV[1]'s failures in KEYS[1]
-- (Redis has no HAPPEND), and let them expire after ARGV[3] ms.
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], old and (old .. '\n' .. ARGV[2]) or ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
