-- Publish records: KEYS are the record keys, ARGV[1] the TTL in ms, ARGV[1 + i] the type.
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'PX', ARGV[1], 'NX')
end
return #KEYS
