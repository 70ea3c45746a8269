-- Append events to the stream KEYS[1]: ARGV holds (type, event JSON) pairs (the fields
-- 't' and 'e': FIELD_TYPE and FIELD_EVENT in keys.py). One command for a batch: redis-py
-- packs each command in Python, which costs more than an XADD.
for i = 1, #ARGV, 2 do
  redis.call('XADD', KEYS[1], '*', 't', ARGV[i], 'e', ARGV[i + 1])
end
return #ARGV / 2
