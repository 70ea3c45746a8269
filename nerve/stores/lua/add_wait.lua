-- Index wait ARGV[3] under prefix ARGV[1], replacing one with its id: ARGV[4] is its JSON,
-- ARGV[5] when it was created, ARGV[6] where it is indexed (JSON [run's event id, awaited
-- type, shape, key]); ARGV[2] is the window in ms. Its run's steps and counters are kept
-- for as long as the run has a wait.
local p, ttl, id = ARGV[1], ARGV[2], ARGV[3]
unwait(p, id, ttl)
local run, etype, shape, key = unpack(cjson.decode(ARGV[6]))
redis.call('HSET', p .. ':waits', id, ARGV[4])
redis.call('HSET', p .. ':waits:where', id, ARGV[6])
redis.call('ZADD', p .. ':waits:order', ARGV[5], id)
redis.call('HINCRBY', p .. ':waits:shapes:' .. etype, shape, 1)
redis.call('SADD', p .. ':waits:key:' .. etype .. ':' .. key, id)
redis.call('SADD', p .. ':waits:run:' .. run, id)
redis.call('PERSIST', p .. ':steps:' .. run)
redis.call('PERSIST', p .. ':counters:' .. run)
