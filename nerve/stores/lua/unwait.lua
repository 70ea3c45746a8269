-- Prepended to the wait scripts (key names as in redis_waits.py). Forget wait `id` under
-- prefix `p` and its index entries; when its run has no wait and no dead letter left,
-- the run's steps and counters get a window (`ttl` ms) from now again. 1 if it existed.
local function unwait(p, id, ttl)
  local where = redis.call('HGET', p .. ':waits:where', id)
  if not where then return 0 end
  local run, etype, shape, key = unpack(cjson.decode(where))
  redis.call('HDEL', p .. ':waits', id)
  redis.call('HDEL', p .. ':waits:where', id)
  redis.call('ZREM', p .. ':waits:order', id)
  redis.call('SREM', p .. ':waits:key:' .. etype .. ':' .. key, id)
  local shapes = p .. ':waits:shapes:' .. etype
  if redis.call('HINCRBY', shapes, shape, -1) <= 0 then redis.call('HDEL', shapes, shape) end
  local waiting = p .. ':waits:run:' .. run
  redis.call('SREM', waiting, id)
  if redis.call('EXISTS', waiting, p .. ':dlq:event:' .. run) == 0 then
    redis.call('PEXPIRE', p .. ':steps:' .. run, ttl)
    redis.call('PEXPIRE', p .. ':counters:' .. run, ttl)
  end
  return 1
end
