-- Record step result ARGV[3] under field ARGV[2] of KEYS[1] (the event's steps); keep
-- them ARGV[1] ms, or while the event has dead letters (KEYS[2]) or waits (KEYS[3]).
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
keep(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
