-- lock.lua: take a pool's lease lock if free, or renew it if the caller holds it.
--
-- KEYS[1]  numberd:{pool}:lock
-- ARGV[1]  the caller's token
-- ARGV[2]  lifetime, milliseconds
--
-- Answer: 1 if the caller holds the lock now, 0 if another does.

local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
