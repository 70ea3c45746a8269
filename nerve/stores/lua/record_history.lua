-- Append to the event log. ARGV: prefix, TTL in ms, the number of events, then per event
-- (id, correlation id, type, published at, JSON), then per outcome (event id, JSON row).
-- An event already logged is left as it is.
local p, ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  local id, corr, etype, at, body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local key = p .. ':log:event:' .. id
  if redis.call('HSETNX', key, 'e', body) == 1 then
    local seq = redis.call('XADD', p .. ':log', '*', 'id', id)
    redis.call('HSET', key, 'at', at, 'seq', seq)
    redis.call('PEXPIRE', key, ttl)
    local chain = p .. ':log:chain:' .. corr
    redis.call('ZADD', chain, at, id)
    redis.call('PEXPIRE', chain, ttl)
    local of_type = p .. ':log:type:' .. etype
    redis.call('ZADD', of_type, at, id)
    redis.call('PEXPIRE', of_type, ttl)
    redis.call('SADD', p .. ':log:types', etype)
    redis.call('PEXPIRE', p .. ':log:types', ttl)
  end
end
while i <= #ARGV do
  local key = p .. ':log:outcomes:' .. ARGV[i]
  redis.call('RPUSH', key, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
  i = i + 2
end
