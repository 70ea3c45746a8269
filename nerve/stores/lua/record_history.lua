-- Append to the event log. ARGV: prefix, TTL in ms, the number of events, then per event
-- (id, correlation id, published at, JSON), then per outcome (event id, JSON row). An
-- event already logged is left as it is.
local p, ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  local id, corr, at, body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local key = p .. ':log:event:' .. id
  if redis.call('HSETNX', key, 'e', body) == 1 then
    local seq = redis.call('XADD', p .. ':log', '*', 'id', id)
    redis.call('HSET', key, 'at', at, 'seq', seq)
    redis.call('PEXPIRE', key, ttl)
    local chain = p .. ':log:chain:' .. corr
    redis.call('ZADD', chain, at, id)
    redis.call('PEXPIRE', chain, ttl)
  end
end
while i <= #ARGV do
  local key = p .. ':log:outcomes:' .. ARGV[i]
  redis.call('RPUSH', key, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
  i = i + 2
end
