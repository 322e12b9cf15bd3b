-- unlock.lua: release a lock only if the caller still holds it, so a holder whose
-- lock expired never releases the next holder's.
--
-- KEYS[1]  the lock
-- ARGV[1]  the caller's token
--
-- Answer: 1 if released, 0 if the lock was not the caller's.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
